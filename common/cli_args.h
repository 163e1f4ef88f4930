/* cli_args.h - range-checked numeric command-line values for the tools.
 * Each parser accepts the whole string or nothing (no trailing text, no
 * overflow, no NaN or infinity), and on failure prints
 * "TOOL: OPTION: 'TEXT' is not ... in [LO, HI]" to stderr and returns
 * false, so a tool can write
 *     if (!cli_int("clattn-generate", "-n", argv[++i], 1, 1 << 20, &n)) return 2; */
#ifndef CLATTN_CLI_ARGS_H
#define CLATTN_CLI_ARGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

bool cli_int(const char *tool, const char *option, const char *text, int64_t lo, int64_t hi,
             int64_t *out);
bool cli_double(const char *tool, const char *option, const char *text, double lo, double hi,
                double *out);

/* A comma-separated list of integers in [lo, hi] ("1,2,3"; spaces allowed
 * around the commas) into a malloc'd array *out of *count >= 1 entries. */
bool cli_int_list(const char *tool, const char *option, const char *text, int64_t lo,
                  int64_t hi, int32_t **out, int32_t *count);

/* An output file the tool will write later: its folder must exist and be
 * writable, and the path must not be a folder or an existing file the user
 * cannot write. Checked before the work starts, so a bad path does not
 * throw the work away. Prints "TOOL: OPTION: PATH: why" and returns false. */
bool cli_output_path(const char *tool, const char *option, const char *path);

/* A folder the tool will write files into later (and create if missing):
 * an existing writable folder, or a new name in an existing writable
 * folder. Prints "TOOL: OPTION: PATH: why" and returns false. */
bool cli_output_dir(const char *tool, const char *option, const char *path);

/* A 30-character progress bar on stderr, redrawn in place: "[####....]
 * epoch E/EPOCHS step S/STEPS loss L" (the training tools, each step). */
void cli_progress(long epoch, long epochs, long step, long steps, double loss);

/* Prints x as a JSON number (%.*g with digits), or null when x is NaN or
 * infinite: JSON has no NaN, and a bare "nan" breaks every reader. */
void cli_json_number(FILE *f, double x, int digits);

/* The last component of path ("models/all-MiniLM-L6-v2/" -> the name), in
 * buf, for titles and labels; returns buf. */
const char *cli_folder_name(const char *path, char *buf, size_t size);

#endif
