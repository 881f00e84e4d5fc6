/*
 * backend_v1noconf: a v1 backend without configure (optional in v1).
 * The request path names the peer: GET /127.0.0.1:7000 → tcp 127.0.0.1:7000,
 * with the default framing (NULL: auto).
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include "websocksy.h"

uint64_t init(){
	return WEBSOCKSY_API_VERSION;
}

ws_peer_info query(char* endpoint, size_t protocols, char** protocol, size_t headers, ws_http_header* header, websocket* ws){
	ws_peer_info peer = {
		0
	};
	(void) protocol;
	(void) headers;
	(void) header;
	(void) ws;
	peer.host = (endpoint[0] == '/' && endpoint[1]) ? strdup(endpoint + 1) : NULL;
	peer.protocol = protocols;
	return peer;
}
