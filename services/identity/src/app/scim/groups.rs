//! PLACEHOLDER (replaced in this change): SCIM Group use cases.
