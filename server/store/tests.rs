//! Unit tests of the memory store through the PeerStore trait.
