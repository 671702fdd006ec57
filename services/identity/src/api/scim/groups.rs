//! PLACEHOLDER (replaced in this change): the /Groups handlers.
