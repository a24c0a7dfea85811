/* slidestream — command dispatcher. `slidestream <command> [args]`; `slidestream --help` lists
 * the commands. Only this main and the command mains it calls may exit the process. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const ss_command_t commands[] = {
    {"run", ss_main_run, "run a pipeline file: all stages as child processes"},
    {"synth", ss_main_synth, "generate a synthetic smear slide or single-cell image set"},
    {"bags", ss_main_bags, "bag-builder: simulated witness-rate bags from cell folders"},
    {"tiler", ss_main_tiler, "stage: open slides and stream tiles"},
    {"cell-cropper", ss_main_cell_cropper, "stage: find cells in tiles and stream centred crops"},
    {"bag-builder", ss_main_bag_builder, "stage: group a slide's cells into a labelled bag"},
    {"encoder", ss_main_encoder, "stage: embed cell crops with a ResNet (scalable worker)"},
    {"cache-writer", ss_main_cache_writer, "stage: write each bag's embeddings to <cache>/<slide_id>.h5"},
    {"replay", ss_main_replay, "stage: stream HDF5 embedding caches as live encoding would"},
    {"checkpoint", ss_main_checkpoint, "create (init) or inspect (info) an encoder checkpoint"},
    {"count", ss_main_count, "stage: collect and count a stream (completion check)"},
    {"detect", ss_main_detect, "detect cells in slides or images: CSV, GeoJSON, gallery, overlay"},
    {"train", ss_main_train, "stage: train the encoder from slide labels (SLAM-AGS and baselines)"},
    {"aggregator", ss_main_aggregator, "stage: predict each complete bag with a MIL model, rank its cells"},
    {"mil", ss_main_mil, "attention MIL aggregators on embedding caches: init, train, predict"},
    {"study", ss_main_study, "the witness-rate study: methods x witness rates x seeds, tables and figure"},
    {"embed", ss_main_embed, "embed cell images with a ResNet checkpoint into one HDF5 file"},
    {"cells", ss_main_cells, "cell folders: crop every labelled cell of annotated images (from-labels)"},
    {"keys", ss_main_keys, "make a CURVE key pair for stages that talk over tcp (keys new DIR)"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: slidestream <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n`slidestream <command> --help` documents a command's flags and endpoints.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("slidestream 0.1.0\n");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].main(argc - 1, argv + 1);
    fprintf(stderr, "slidestream: unknown command '%s' (see slidestream --help)\n", argv[1]);
    return 2;
}
