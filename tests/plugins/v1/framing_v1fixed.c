/*
 * framing_v1fixed: fixed-size records, the logic of the original's
 * `fixedlength` plugin written afresh for the bridge's tests, registered
 * under the same name "fixedlength". The config is the record size
 * (strtoul base 0: decimal, 0x hex, 0 octal); 0, unparsable or a NULL
 * config passes everything through. Frames are binary (the preset).
 * The size lives in a calloc'd uint64_t in *framing_data.
 */
#include <stdio.h>
#include "websocksy.h"

static int64_t framing_fixedlength(uint8_t* data, size_t length, size_t last_read, ws_operation* opcode, void** framing_data, const char* config){
	uint64_t* size = *framing_data;
	(void) last_read;
	(void) opcode;

	if(!data){
		free(size);
		*framing_data = NULL;
		return 0;
	}

	if(!size){
		size = calloc(1, sizeof(uint64_t));
		if(!size){
			return -1;
		}
		*size = config ? strtoul(config, NULL, 0) : 0;
		*framing_data = size;
	}

	if(!*size){
		return length;
	}
	return (length >= *size) ? (int64_t) *size : 0;
}

static void __attribute__((constructor)) register_fixedlength(void){
	if(core_register_framing("fixedlength", framing_fixedlength)){
		fprintf(stderr, "fixedlength: failed to register\n");
	}
}
