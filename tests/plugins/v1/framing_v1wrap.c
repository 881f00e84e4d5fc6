/*
 * framing_v1wrap: a v1 framing that delegates to another framing found
 * with core_framing(), the way v1 plugins composed framings. Registers
 * "v1wrap". Config "NAME" or "NAME:CONFIG": frame with NAME (NULL or an
 * unknown name gives auto), passing CONFIG (or NULL). The inner framing's
 * state lives inside ours; our NULL-data cleanup call forwards it and then
 * prints "v1wrap: cleanup inner=cleared|kept" to stderr.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include "websocksy.h"

typedef struct {
	ws_framing inner;
	void* inner_state;
	char* inner_config;
} wrap_state;

static int64_t framing_v1wrap(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config){
	wrap_state* state = *framing_data;

	if(!data){
		if(state){
			if(state->inner_state){
				state->inner(NULL, 0, 0, NULL, &state->inner_state, state->inner_config);
			}
			fprintf(stderr, "v1wrap: cleanup inner=%s\n", state->inner_state ? "kept" : "cleared");
			free(state->inner_config);
			free(state);
		}
		*framing_data = NULL;
		return 0;
	}

	if(!state){
		char name[64] = "";
		const char* colon = config ? strchr(config, ':') : NULL;
		state = calloc(1, sizeof(wrap_state));
		if(!state){
			return -1;
		}
		if(config){
			size_t len = colon ? (size_t) (colon - config) : strlen(config);
			if(len >= sizeof(name)){
				len = sizeof(name) - 1;
			}
			memcpy(name, config, len);
			name[len] = 0;
		}
		state->inner = core_framing(config ? name : NULL);
		state->inner_config = colon ? strdup(colon + 1) : NULL;
		*framing_data = state;
	}

	return state->inner(data, length, last_read, opcode, &state->inner_state, state->inner_config);
}

static void __attribute__((constructor)) register_v1wrap(void){
	if(core_register_framing("v1wrap", framing_v1wrap)){
		fprintf(stderr, "v1wrap: failed to register\n");
	}
}
