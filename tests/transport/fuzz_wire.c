/* wire.fuzz — libFuzzer target over the message decoder. The input's first byte picks the
 * frame count, the next SS_WIRE_HEADER_SIZE bytes are the header frame, the rest the payload.
 * Invariants: decode never crashes or reads out of bounds (ASan), and a message it accepts
 * re-encodes to the same header bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slidestream/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int nframes = 1 + data[0] % 3;
    data++, size--;
    size_t hdr_size = size < SS_WIRE_HEADER_SIZE ? size : SS_WIRE_HEADER_SIZE;
    /* Copy into exact-size heap buffers so ASan sees any overread. */
    uint8_t *hdr = malloc(hdr_size ? hdr_size : 1);
    memcpy(hdr, data, hdr_size);
    size_t psize = size - hdr_size;
    uint8_t *payload = psize ? malloc(psize) : NULL;
    if (psize) memcpy(payload, data + hdr_size, psize);
    ss_msg_header_t h;
    char why[256];
    if (ss_msg_decode(nframes, hdr, hdr_size, payload, psize, &h, why, sizeof why) == 0) {
        uint8_t again[SS_WIRE_HEADER_SIZE];
        ss_msg_header_encode(&h, again);
        if (memcmp(again, hdr, SS_WIRE_HEADER_SIZE)) abort();
        if (h.payload_size != psize) abort();
    }
    free(payload);
    free(hdr);
    return 0;
}
