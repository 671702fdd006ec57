//! PLACEHOLDER (replaced in this change): the /Users handlers.
