//! The `mirror://` peer: every message comes straight back to the client
//! with its opcode, through the same outbound frame path real peers use.
//! It keeps message boundaries, which a TCP echo server cannot, so the
//! WebSocket layer can be tested on its own (Autobahn runs against it).
