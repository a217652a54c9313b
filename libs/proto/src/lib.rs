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

/// The suite's protobuf codec: prost's, with 1 KiB encode and decode buffers instead of
/// tonic's 8 KiB. A server-streaming response keeps its encode buffer for the stream's whole
/// life, so each open WatchQueue stream held 8 KiB for messages of ~100 bytes; a buffer
/// grows when a larger message needs it (the audit exports), so nothing is refused.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

/// 1 KiB to start with; yield to the runtime after 32 KiB of encoded messages (tonic's).
fn small_buffers() -> tonic::codec::BufferSettings {
    tonic::codec::BufferSettings::new(1024, 32 * 1024)
}

impl<T, U> tonic::codec::Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = <tonic_prost::ProstCodec<T, U> as tonic::codec::Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstCodec::<T, U>::raw_encoder(small_buffers())
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstCodec::<T, U>::raw_decoder(small_buffers())
    }
}
