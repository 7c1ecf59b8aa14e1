// Package p2p owns the node's libp2p side: the host (a persistent Ed25519
// identity, TCP and QUIC listeners, an optional pre-shared key for private
// swarms, the connection and resource managers), bootstrap dialing, the
// Kademlia DHT, gossipsub, and helpers for length-delimited protocol messages
// with deadlines and size limits.
//
// It knows nothing about tasks: the market package registers its own
// protocols and topics on the Host built here.
//
// Choices:
//   - The DHT runs in server mode by default so that small swarms (a laptop
//     and a lab machine, a test on loopback) have a working routing table;
//     private swarms use their own protocol prefix (/offload/private/<id>).
//   - With a swarm key only TCP is used: QUIC cannot carry a pre-shared key.
//   - Messages on streams are a uvarint length followed by JSON; a reader
//     refuses any message above its size limit before allocating it.
package p2p
