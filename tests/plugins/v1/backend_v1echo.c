/*
 * backend_v1echo: a websocksy API version 1 backend, written against the v1
 * header the way the original's plugins were, for the bridge's tests.
 *
 * Options (configure):
 *   target          peer host, e.g. tcp://127.0.0.1:7000 (required to answer)
 *   port            peer port (else taken from target)
 *   transport       peer_transport value (default peer_transport_detect)
 *   framing         framing name, looked up with core_framing()
 *   framing-config  framing config string
 *   protocol        subprotocol to select (strcmp), or * for the first
 *   report          file to append what each query saw, and "cleanup" at exit
 * Unknown keys are rejected (returns 1).
 *
 * Per request (each query prints "v1echo: query ENDPOINT" to stderr):
 *   /reject         host NULL (no peer: the client gets a 500)
 *   /slow...        sleeps 2 s before answering
 *   header X-V1-Framing: NAME   overrides the framing
 *   cookie cfg=VALUE            overrides the framing config
 * The endpoint's trailing '/' is trimmed in place, as backend_file does.
 *
 * init() returns WEBSOCKSY_API_VERSION, or V1ECHO_INIT when built with
 * -DV1ECHO_INIT=N (a backend of another API version).
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "websocksy.h"

static char* target = NULL;
static char* port = NULL;
static char* framing = NULL;
static char* framing_config = NULL;
static char* protocol = NULL;
static char* report = NULL;
static peer_transport transport = peer_transport_detect;

static char* copy(const char* s){
	size_t len = strlen(s);
	char* c = calloc(len + 1, 1);
	if(c){
		memcpy(c, s, len);
	}
	return c;
}

static void set(char** field, char* value){
	free(*field);
	*field = copy(value);
}

#ifndef V1ECHO_INIT
#define V1ECHO_INIT WEBSOCKSY_API_VERSION
#endif

uint64_t init(){
	return V1ECHO_INIT;
}

uint64_t configure(char* key, char* value){
	if(!strcmp(key, "target")){
		set(&target, value);
	}
	else if(!strcmp(key, "port")){
		set(&port, value);
	}
	else if(!strcmp(key, "transport")){
		transport = (peer_transport) strtoul(value, NULL, 0);
	}
	else if(!strcmp(key, "framing")){
		set(&framing, value);
	}
	else if(!strcmp(key, "framing-config")){
		set(&framing_config, value);
	}
	else if(!strcmp(key, "protocol")){
		set(&protocol, value);
	}
	else if(!strcmp(key, "report")){
		set(&report, value);
	}
	else{
		fprintf(stderr, "Unknown backend configuration option %s\n", key);
		return 1;
	}
	return 0;
}

static const char* header_value(size_t headers, ws_http_header* header, const char* tag){
	size_t u;
	for(u = 0; u < headers; u++){
		if(!strcmp(header[u].tag, tag)){
			return header[u].value;
		}
	}
	return NULL;
}

/* The value of cookie `name` as a fresh string, or NULL. */
static char* cookie(size_t headers, ws_http_header* header, const char* name){
	const char* c = header_value(headers, header, "Cookie");
	size_t len = strlen(name);
	while(c && *c){
		if(!strncmp(c, name, len) && c[len] == '='){
			const char* v = c + len + 1;
			size_t vlen = strcspn(v, ";");
			char* r = calloc(vlen + 1, 1);
			if(r){
				memcpy(r, v, vlen);
			}
			return r;
		}
		c = strstr(c, "; ");
		if(c){
			c += 2;
		}
	}
	return NULL;
}

static void write_report(char* endpoint, size_t protocols, char** proto, size_t headers, ws_http_header* header, websocket* ws){
	size_t u;
	FILE* f;
	if(!report){
		return;
	}
	f = fopen(report, "a");
	if(!f){
		return;
	}
	fprintf(f, "endpoint=%s\n", endpoint);
	fprintf(f, "protocols=%lu\n", (unsigned long) protocols);
	for(u = 0; u < protocols; u++){
		fprintf(f, "protocol=%s\n", proto[u]);
	}
	fprintf(f, "headers=%lu\n", (unsigned long) headers);
	for(u = 0; u < headers; u++){
		fprintf(f, "header=%s: %s\n", header[u].tag, header[u].value);
	}
	fprintf(f, "ws.state=%d\n", (int) ws->state);
	fprintf(f, "ws.request_path=%s\n", ws->request_path);
	fprintf(f, "ws.websocket_version=%u\n", ws->websocket_version);
	fprintf(f, "ws.socket_key=%s\n", ws->socket_key ? ws->socket_key : "(null)");
	fprintf(f, "ws.headers=%lu\n", (unsigned long) ws->headers);
	fprintf(f, "ws.protocols=%lu\n", (unsigned long) ws->protocols);
	fprintf(f, "ws.aliased=%d\n", ws->request_path == endpoint && ws->header == header && ws->protocol == proto);
	fprintf(f, "ws.peer_host=%s\n", ws->peer.host ? ws->peer.host : "(null)");
	fprintf(f, "end\n");
	fclose(f);
}

ws_peer_info query(char* endpoint, size_t protocols, char** proto, size_t headers, ws_http_header* header, websocket* ws){
	ws_peer_info peer = {
		0
	};
	size_t u, len = strlen(endpoint);
	const char* framing_name = framing;
	char* cfg;

	fprintf(stderr, "v1echo: query %s\n", endpoint);
	write_report(endpoint, protocols, proto, headers, header, ws);

	/* Trim a trailing slash in place, as backend_file does */
	if(len > 1 && endpoint[len - 1] == '/'){
		endpoint[len - 1] = 0;
	}

	if(!strncmp(endpoint, "/slow", 5)){
		struct timespec ts = {2, 0};
		nanosleep(&ts, NULL);
	}

	if(!strcmp(endpoint, "/reject") || !target){
		return peer;
	}

	peer.transport = transport;
	peer.host = copy(target);
	peer.port = port ? copy(port) : NULL;

	if(header_value(headers, header, "X-V1-Framing")){
		framing_name = header_value(headers, header, "X-V1-Framing");
	}
	peer.framing = framing_name ? core_framing((char*) framing_name) : NULL;

	cfg = cookie(headers, header, "cfg");
	if(cfg){
		peer.framing_config = cfg;
	}
	else if(framing_config){
		peer.framing_config = copy(framing_config);
	}

	/* protocols means "none" */
	peer.protocol = protocols;
	if(protocol){
		for(u = 0; u < protocols; u++){
			if(!strcmp(protocol, "*") || !strcmp(protocol, proto[u])){
				peer.protocol = u;
				break;
			}
		}
	}
	return peer;
}

void cleanup(){
	if(report){
		FILE* f = fopen(report, "a");
		if(f){
			fprintf(f, "cleanup\n");
			fclose(f);
		}
	}
	free(target);
	free(port);
	free(framing);
	free(framing_config);
	free(protocol);
	free(report);
	target = port = framing = framing_config = protocol = report = NULL;
}
