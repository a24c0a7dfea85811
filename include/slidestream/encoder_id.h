/* slidestream — the identity of an encoder as recorded in embedding caches: architecture,
 * a SHA-256 of the checkpoint file, which vector is the embedding, and the preprocessing.
 * The tiler (to skip slides already cached) and the cache writer (to label files) compute
 * it the same way, from the checkpoint alone. */
#ifndef SLIDESTREAM_ENCODER_ID_H
#define SLIDESTREAM_ENCODER_ID_H

typedef struct {
    char encoder[96];       /* "resnet18", "resnet18-w0.25", "resnet18-layer3", ... */
    char hash[65];          /* SHA-256 of the checkpoint file, hex */
    char feature[16];       /* "pooled" | "projection" */
    char preprocessing[192];/* "input=96;mean=a,b,c;std=d,e,f" */
    int input_size;
    int dim;                /* width of the chosen embedding */
} ss_encoder_id_t;

/* Reads the checkpoint's attributes and digests the file. Errors name the file. */
int ss_encoder_id(const char *checkpoint, const char *feature, ss_encoder_id_t *id);

#endif
