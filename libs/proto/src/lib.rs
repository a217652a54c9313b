//! Generated code for the suite's protobuf contracts (`proto/concert/<service>/v1`).
//!
//! Modules mirror the proto packages: `concert::queue::v1`, `concert::catalog::v1`,
//! `concert::reservation::v1`, `concert::wallet::v1`. [`FILE_DESCRIPTOR_SET`] feeds server
//! reflection, so `buf curl` and grpcurl can list and call every method.
#![allow(clippy::all, clippy::pedantic, missing_docs, unreachable_pub)]

/// Encoded `FileDescriptorSet` of every concert.* package plus its google/protobuf imports.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/concert_descriptor.bin"));

pub mod concert {
    pub mod queue {
        pub mod v1 {
            tonic::include_proto!("concert.queue.v1");
        }
    }
    pub mod catalog {
        pub mod v1 {
            tonic::include_proto!("concert.catalog.v1");
        }
    }
    pub mod reservation {
        pub mod v1 {
            tonic::include_proto!("concert.reservation.v1");
        }
    }
    pub mod wallet {
        pub mod v1 {
            tonic::include_proto!("concert.wallet.v1");
        }
    }
}

pub use prost_types::Timestamp;
