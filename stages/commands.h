/* slidestream — the command table: every stage and tool is `slidestream <name> ...`.
 * Each entry's main is defined in its own stages/<name>.c file. */
#ifndef SLIDESTREAM_COMMANDS_H
#define SLIDESTREAM_COMMANDS_H

typedef struct {
    const char *name;
    int (*main)(int argc, char **argv); /* argv[0] is the command name */
    const char *summary;
} ss_command_t;

int ss_main_run(int argc, char **argv);
int ss_main_synth(int argc, char **argv);
int ss_main_bags(int argc, char **argv);
int ss_main_tiler(int argc, char **argv);
int ss_main_count(int argc, char **argv);
int ss_main_detect(int argc, char **argv);
int ss_main_cell_cropper(int argc, char **argv);
int ss_main_bag_builder(int argc, char **argv);
int ss_main_embed(int argc, char **argv);
int ss_main_cells(int argc, char **argv);
int ss_main_encoder(int argc, char **argv);
int ss_main_cache_writer(int argc, char **argv);
int ss_main_replay(int argc, char **argv);
int ss_main_checkpoint(int argc, char **argv);
int ss_main_train(int argc, char **argv);
int ss_main_mil(int argc, char **argv);
int ss_main_aggregator(int argc, char **argv);
int ss_main_study(int argc, char **argv);
int ss_main_keys(int argc, char **argv);

#endif
