/*
 * Prints the v1 ABI layout facts (sizes and field offsets) as "name value"
 * lines, for the Rust mirror's test in core/src/plugin/v1.rs.
 */
#include <stddef.h>
#include <stdio.h>
#include "websocksy.h"

#define SIZE(t) printf("sizeof(%s) %lu\n", #t, (unsigned long) sizeof(t))
#define OFF(t, f) printf("%s.%s %lu\n", #t, #f, (unsigned long) offsetof(t, f))

int main(void){
	SIZE(ws_http_header);
	SIZE(ws_peer_info);
	SIZE(websocket);
	SIZE(ws_operation);
	SIZE(peer_transport);
	SIZE(ws_state);
	OFF(ws_http_header, tag);
	OFF(ws_http_header, value);
	OFF(ws_peer_info, transport);
	OFF(ws_peer_info, host);
	OFF(ws_peer_info, port);
	OFF(ws_peer_info, framing);
	OFF(ws_peer_info, framing_config);
	OFF(ws_peer_info, protocol);
	OFF(websocket, ws_fd);
	OFF(websocket, read_buffer);
	OFF(websocket, read_buffer_offset);
	OFF(websocket, state);
	OFF(websocket, last_event);
	OFF(websocket, headers);
	OFF(websocket, header);
	OFF(websocket, request_path);
	OFF(websocket, websocket_version);
	OFF(websocket, socket_key);
	OFF(websocket, want_upgrade);
	OFF(websocket, protocols);
	OFF(websocket, protocol);
	OFF(websocket, peer);
	OFF(websocket, peer_fd);
	OFF(websocket, peer_buffer);
	OFF(websocket, peer_buffer_offset);
	OFF(websocket, peer_framing_data);
	printf("WEBSOCKSY_API_VERSION %d\n", WEBSOCKSY_API_VERSION);
	printf("ws_frame_discard %d\n", (int) ws_frame_discard);
	printf("ws_http %d\n", (int) ws_http);
	printf("peer_unix_dgram %d\n", (int) peer_unix_dgram);
	return 0;
}
