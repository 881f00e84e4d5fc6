/*
 * websocksy.h - the plugin API of the original websocksy, API version 1.
 *
 * Written for this repository's tests from the published ABI facts of the
 * original (cbdevnet/websocksy, websocksy.h; see
 * reference/websocksy-spec.md sections 2.1-2.5): the types, enums, limits,
 * struct layouts and the two core_* functions a v1 plugin may call. Plugins
 * built against the original header build unchanged against this one, and
 * load into the Rust bridge unmodified.
 *
 * Backends export `init` (required, returns WEBSOCKSY_API_VERSION),
 * `configure` (optional), `query` (required) and `cleanup` (optional).
 * Framing plugins register their functions from an ELF constructor with
 * core_register_framing; the executable exports core_register_framing and
 * core_framing, so they resolve when the plugin is dlopen'd.
 */
#ifndef WEBSOCKSY_V1_H
#define WEBSOCKSY_V1_H

#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#define WEBSOCKSY_API_VERSION 1
#define WEBSOCKSY_VERSION "0.1"
#define WS_MAX_LINE 16384        /* HTTP/WS read buffer size & limit */
#define PEER_BUFFER_SIZE 16384   /* Peer read buffer size / proxy packet limit */
#define WS_HEADER_LIMIT 10       /* Maximum number of HTTP headers to accept */

typedef enum {
	ws_new = 0, /* Initial state */
	ws_http, /* HTTP Headers */
	ws_open, /* Upgrade performed, forwarding */
	ws_closed /* Close frame sent */
} ws_state;

typedef enum {
	ws_frame_continuation = 0,
	ws_frame_text = 1,
	ws_frame_binary = 2,
	ws_frame_close = 8,
	ws_frame_ping = 9,
	ws_frame_pong = 10,
	ws_frame_discard /* Special opcode to discard bytes from the peer buffer */
} ws_operation;

typedef enum {
	ws_close_http = 100,
	ws_close_normal = 1000,
	ws_close_shutdown = 1001,
	ws_close_proto = 1002,
	ws_close_data = 1003,
	ws_close_format = 1007,
	ws_close_policy = 1008,
	ws_close_limit = 1009,
	ws_close_unexpected = 1011
} ws_close_reason;

typedef struct /*_ws_http_header*/ {
	char* tag;
	char* value;
} ws_http_header;

typedef enum {
	peer_transport_detect,
	peer_tcp_client,
	peer_udp_client,
	peer_fifo_tx,
	peer_fifo_rx,
	peer_unix_stream,
	peer_unix_dgram
} peer_transport;

/*
 * Framing function: called with the connection's unframed peer bytes.
 * Return n > 0 to send data[0..n) as one message with *opcode (or drop it
 * with ws_frame_discard), 0 to wait for more data. *framing_data is a
 * per-connection pointer, initially NULL; when the connection closes with a
 * non-NULL state the core calls framing(NULL, 0, 0, NULL, &state, config)
 * once so the plugin can free it. config may be NULL.
 */
typedef int64_t (*ws_framing)(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config);

typedef struct /*_ws_peer_info*/ {
	/* Peer protocol data */
	peer_transport transport;
	char* host;
	char* port;

	/* Framing function for this peer */
	ws_framing framing;
	char* framing_config;

	/* WebSocket subprotocol indication index*/
	size_t protocol;
} ws_peer_info;

typedef struct /*_web_socket*/ {
	/* WebSocket state & data */
	int ws_fd;
	uint8_t read_buffer[WS_MAX_LINE];
	size_t read_buffer_offset;
	ws_state state;
	time_t last_event;

	/* HTTP request headers */
	size_t headers;
	ws_http_header header[WS_HEADER_LIMIT];

	/* WebSocket parameters */
	char* request_path;
	unsigned websocket_version;
	char* socket_key;
	unsigned want_upgrade;

	/* WebSocket indicated subprotocols*/
	size_t protocols;
	char** protocol;

	/* Peer data */
	ws_peer_info peer;
	int peer_fd;
	uint8_t peer_buffer[PEER_BUFFER_SIZE];
	size_t peer_buffer_offset;
	void* peer_framing_data;
} websocket;

/* Backend symbols (exported by name, resolved with dlsym) */
typedef uint64_t (*ws_backend_init)();
typedef uint64_t (*ws_backend_configure)(char* key, char* value);
typedef ws_peer_info (*ws_backend_query)(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws);
typedef void (*ws_backend_cleanup)();

typedef struct /*_ws_backend*/ {
	ws_backend_init init;
	ws_backend_configure config;
	ws_backend_query query;
	ws_backend_cleanup cleanup;
} ws_backend;

/* Exported by the core */

/* The framing function registered under name; NULL or an unknown name gives
 * the one registered as "auto". */
ws_framing core_framing(char* name);
/* Register (or replace) a framing function; 0 = ok, 1 = failure. */
int core_register_framing(char* name, ws_framing func);

#endif
