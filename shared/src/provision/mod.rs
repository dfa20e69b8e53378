//! Mapping what EC2 reports onto HostFactory's results (spec §2.4); the EC2 calls themselves are
//! in [`crate::cloud`].

pub mod status;
