//! The plumbing under the model rooms: none of it knows about anomalies. Where tensors live and
//! how `auto` picks a device ([`compute`]), how they come back to the host ([`readback`]), the
//! seedable generator ([`rng`]), ZIP archives ([`zip`]), and settings chosen by name ([`named`]).

#[macro_use]
pub mod named;

pub mod compute;
pub mod readback;
pub mod rng;
pub mod zip;
