//! SCIM 2.0 provisioning end to end (rule ID-14): the four services in process, the SCIM routes
//! over HTTP, real DNS verification of the organizations' domains.

#[path = "scim/rig.rs"]
mod rig;

#[path = "scim/lifecycle.rs"]
mod lifecycle;

#[path = "scim/tenancy.rs"]
mod tenancy;

#[path = "scim/dialects.rs"]
mod dialects;
