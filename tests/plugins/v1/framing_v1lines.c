/*
 * framing_v1lines: a websocksy API version 1 framing plugin for the
 * bridge's tests. Registers "v1lines" from its ELF constructor through
 * core_register_framing (a placeholder first, then the real function, so the
 * replacement path runs too).
 *
 * Frames one line per message, '\n' included, searching only the bytes of
 * the last read (like the original's separator). Lines are text, except:
 *   "B..."     the opcode is left as the core preset it (binary)
 *   "ERR"      returns -1 (a framing error)
 *   "PING"     sets ws_frame_ping (not a data opcode)
 *   ""         discarded when the config is "discard-empty"
 * With the config "check-overlap", every call spends 2 ms inside the
 * function with a global flag set, and returns -1 (a framing error) if it
 * finds the flag already set: another thread is inside too, which a v1
 * plugin (written for the original's single thread) must never see.
 * Keeps a calloc'd line counter in *framing_data; the NULL-data cleanup call
 * prints "v1lines: cleanup lines=N config=C" to stderr and frees it.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include "websocksy.h"

/* Deliberately not atomic: the host must never let two calls overlap. */
static volatile int inside;

typedef struct {
	size_t lines;
} lines_state;

static int64_t framing_v1lines(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config){
	lines_state* state = *framing_data;
	uint8_t* nl;
	size_t n;

	if(!data){
		fprintf(stderr, "v1lines: cleanup lines=%lu config=%s\n", (unsigned long) (state ? state->lines : 0), config ? config : "(null)");
		free(state);
		*framing_data = NULL;
		return 0;
	}

	if(config && !strcmp(config, "check-overlap")){
		struct timespec two_ms = {0, 2000000};
		if(inside){
			fprintf(stderr, "v1lines: two calls at once\n");
			return -1;
		}
		inside = 1;
		nanosleep(&two_ms, NULL);
		inside = 0;
	}

	if(!state){
		state = calloc(1, sizeof(lines_state));
		if(!state){
			return -1;
		}
		*framing_data = state;
	}

	/* The original core put a NUL here; writing it must be harmless */
	data[length] = 0;

	nl = memchr(data + length - last_read, '\n', last_read);
	if(!nl){
		return 0;
	}
	n = nl - data + 1;
	state->lines++;

	if(n == 4 && !memcmp(data, "ERR", 3)){
		return -1;
	}
	if(n == 5 && !memcmp(data, "PING", 4)){
		*opcode = ws_frame_ping;
		return n;
	}
	if(n == 1 && config && !strcmp(config, "discard-empty")){
		*opcode = ws_frame_discard;
		return n;
	}
	if(data[0] != 'B'){
		*opcode = ws_frame_text;
	}
	return n;
}

static int64_t placeholder(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config){
	(void) data;
	(void) length;
	(void) last_read;
	(void) opcode;
	(void) framing_data;
	(void) config;
	return -1;
}

static void __attribute__((constructor)) register_v1lines(void){
	if(core_register_framing("v1lines", placeholder)
			|| core_register_framing("v1lines", framing_v1lines)){
		fprintf(stderr, "v1lines: failed to register\n");
	}
}
