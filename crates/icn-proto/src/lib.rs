//! Generated protobuf and gRPC code for every ICN API, one module per versioned package.
//! Nothing here is written by hand: edit `proto/` and rebuild.

/// Encoded `FileDescriptorSet` of every ICN package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("icn_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("icn.common.v1");
    }
}

pub mod net {
    pub mod v1 {
        tonic::include_proto!("icn.net.v1");
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.net.wire.v1");
        }
    }
}

pub mod gossip {
    pub mod v1 {
        tonic::include_proto!("icn.gossip.v1");
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.gossip.wire.v1");
        }
    }
}

pub mod ledger {
    pub mod v1 {
        tonic::include_proto!("icn.ledger.v1");
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.ledger.wire.v1");
        }
    }
}

pub mod compute {
    pub mod v1 {
        tonic::include_proto!("icn.compute.v1");
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("icn.gateway.v1");
    }
}
