//! Generated protobuf and gRPC code for every ICN API, one module per versioned package.
//! Nothing here is written by hand: edit `proto/` and rebuild. Every message also has
//! serde in the proto3 JSON mapping (pbjson), which the gateway's REST API speaks.

/// Encoded `FileDescriptorSet` of every ICN package, for gRPC server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("icn_descriptor");

pub mod common {
    pub mod v1 {
        tonic::include_proto!("icn.common.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.common.v1.serde.rs"));
    }
}

pub mod net {
    pub mod v1 {
        tonic::include_proto!("icn.net.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.net.v1.serde.rs"));
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.net.wire.v1");
            include!(concat!(env!("OUT_DIR"), "/icn.net.wire.v1.serde.rs"));
        }
    }
}

pub mod gossip {
    pub mod v1 {
        tonic::include_proto!("icn.gossip.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.gossip.v1.serde.rs"));
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.gossip.wire.v1");
            include!(concat!(env!("OUT_DIR"), "/icn.gossip.wire.v1.serde.rs"));
        }
    }
}

pub mod ledger {
    pub mod v1 {
        tonic::include_proto!("icn.ledger.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.ledger.v1.serde.rs"));
    }
    pub mod wire {
        pub mod v1 {
            tonic::include_proto!("icn.ledger.wire.v1");
            include!(concat!(env!("OUT_DIR"), "/icn.ledger.wire.v1.serde.rs"));
        }
    }
}

pub mod compute {
    pub mod v1 {
        tonic::include_proto!("icn.compute.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.compute.v1.serde.rs"));
    }
}

pub mod gateway {
    pub mod v1 {
        tonic::include_proto!("icn.gateway.v1");
        include!(concat!(env!("OUT_DIR"), "/icn.gateway.v1.serde.rs"));
    }
}
