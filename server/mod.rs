//! The signaling service: peer registry, gRPC service, REST shim.
