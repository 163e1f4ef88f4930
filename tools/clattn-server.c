/* clattn-server - OpenAI-compatible embeddings and completions over HTTP,
 * with dynamic batching (tools/server/: the HTTP front end, the routes,
 * the embedding batcher and the completion scheduler).
 *
 *   clattn-server --model models/all-MiniLM-L6-v2 --port 8080
 *   clattn-server --lm DIR --api-key secret
 *
 * Exit status: 0 after a clean shutdown (SIGTERM or SIGINT: stop
 * accepting, finish the requests in flight), 1 when a model or the socket
 * cannot be set up, 2 on a usage error. */
#include "cli_args.h"
#include "server/server.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *TOOL = "clattn-server";

static void usage(FILE *f)
{
    fprintf(f,
            "usage: clattn-server (--model DIR | --lm DIR | both) [options]\n"
            "  --model DIR          embedding model (BERT / sentence-transformers folder):\n"
            "                       POST /v1/embeddings, POST /embed\n"
            "  --lm DIR             decoder language model folder: POST /v1/completions\n"
            "  --host HOST          address to listen on (default 127.0.0.1)\n"
            "  --port N             port (default 8080; 0: any free port, printed)\n"
            "  --device SEL         device selector (as CLATTN_DEVICE)\n"
            "  --api-key KEY        require \"Authorization: Bearer KEY\" on every request\n"
            "                       (also read from CLATTN_API_KEY)\n"
            "  --max-batch N        texts per embedding pass, and completions decoded\n"
            "                       together (default 32; 1: no batching)\n"
            "  --max-wait-ms N      how long a batch waits to fill (default 0: a batch is\n"
            "                       what arrived while the previous one ran)\n"
            "  --max-body-bytes N   largest request body (default 1048576)\n"
            "  --max-inputs N       inputs per embedding request (default 2048)\n"
            "  --max-queue N        requests waiting per model before 503 (default 256)\n"
            "  --threads N          connections served at once, one thread each (default 64)\n"
            "  --ctx-size N         KV-cache positions per completion (default 4096, at most\n"
            "                       the model's; 0: the model's)\n"
            "  --cache-type T       f32 (default) or f16\n"
            "  --drain-timeout S    seconds to finish requests on shutdown (default 60)\n"
            "  -h, --help           this text\n");
}

static int parse(int argc, char **argv, server_options *o)
{
    memset(o, 0, sizeof *o);
    o->host = "127.0.0.1";
    o->port = 8080;
    o->max_batch = 32;
    o->max_wait_ms = 0;
    o->max_body = 1 << 20;
    o->max_inputs = 2048;
    o->max_queue = 256;
    o->threads = 64;
    o->ctx_size = 4096;
    o->drain_s = 60;
    o->api_key = getenv("CLATTN_API_KEY");
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 1;
        }
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "%s: %s: unknown option, or it needs a value (see --help)\n", TOOL,
                    a);
            return 2;
        }
        i++;
        int64_t n;
        /* Integer options: name, field, range. */
        struct {
            const char *name;
            int32_t *field;
            int64_t lo, hi;
        } ints[] = {{"--port", &o->port, 0, 65535},
                    {"--max-batch", &o->max_batch, 1, 1024},
                    {"--max-wait-ms", &o->max_wait_ms, 0, 60000},
                    {"--max-inputs", &o->max_inputs, 1, 1 << 20},
                    {"--max-queue", &o->max_queue, 1, 1 << 20},
                    {"--threads", &o->threads, 1, 4096},
                    {"--ctx-size", &o->ctx_size, 0, 1 << 24},
                    {"--drain-timeout", &o->drain_s, 0, 86400}};
        bool done = false;
        for (size_t k = 0; k < sizeof ints / sizeof *ints && !done; k++)
            if (!strcmp(a, ints[k].name)) {
                if (!cli_int(TOOL, a, v, ints[k].lo, ints[k].hi, &n))
                    return 2;
                *ints[k].field = (int32_t)n;
                done = true;
            }
        if (done)
            continue;
        if (!strcmp(a, "--model"))
            o->model_dir = v;
        else if (!strcmp(a, "--lm"))
            o->lm_dir = v;
        else if (!strcmp(a, "--host"))
            o->host = v;
        else if (!strcmp(a, "--device"))
            o->device = v;
        else if (!strcmp(a, "--api-key"))
            o->api_key = v;
        else if (!strcmp(a, "--max-body-bytes")) {
            if (!cli_int(TOOL, a, v, 16, (int64_t)1 << 32, &n))
                return 2;
            o->max_body = n;
        } else if (!strcmp(a, "--cache-type")) {
            if (strcmp(v, "f32") && strcmp(v, "f16")) {
                fprintf(stderr, "%s: --cache-type: '%s' is not f32 or f16\n", TOOL, v);
                return 2;
            }
            o->cache = strcmp(v, "f16") == 0 ? CLATTN_CACHE_F16 : CLATTN_CACHE_F32;
        } else {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", TOOL, a);
            return 2;
        }
    }
    if (!o->model_dir && !o->lm_dir) {
        fprintf(stderr, "%s: give --model DIR, --lm DIR or both (see --help)\n", TOOL);
        return 2;
    }
    if (o->api_key && !*o->api_key) {
        fprintf(stderr, "%s: --api-key is empty\n", TOOL);
        return 2;
    }
    return 0;
}

int main(int argc, char **argv)
{
    server srv;
    memset(&srv, 0, sizeof srv);
    int rc = parse(argc, argv, &srv.opt);
    if (rc)
        return rc == 1 ? 0 : 2;
    /* Every thread started from here on inherits the blocked signals, so
     * SIGINT and SIGTERM reach only sigwait below. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a client that leaves is not fatal */

    http_server *http = NULL;
    bool ok = (!srv.opt.model_dir || embed_queue_start(&srv.opt, &srv.embed)) &&
              (!srv.opt.lm_dir || lm_scheduler_start(&srv.opt, &srv.lm)) &&
              http_start(&srv, &http);
    if (ok) {
        fprintf(stderr, "%s: listening on http://%s:%d (embeddings: %s, completions: %s)\n",
                TOOL, srv.opt.host, http_port(http),
                srv.embed ? embed_queue_model_name(srv.embed) : "none",
                srv.lm ? lm_scheduler_model_name(srv.lm) : "none");
        int sig = 0;
        sigwait(&stop, &sig);
        fprintf(stderr, "%s: %s: finishing the requests in flight\n", TOOL,
                sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    http_stop(http);
    embed_queue_stop(srv.embed);
    lm_scheduler_stop(srv.lm);
    if (ok)
        fprintf(stderr, "%s: stopped\n", TOOL);
    return ok ? 0 : 1;
}
