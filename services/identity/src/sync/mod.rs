//! The event streams identity consumes: the organization service's ([`organization`]).

pub mod organization;
