/* http.c - clattn-server's HTTP front end on libmicrohttpd: one thread per
 * connection (at most --threads), request bodies collected up to
 * --max-body-bytes, the API key, routing to the handlers, the replies
 * (JSON, or server-sent events for a streamed completion), one log line
 * per request on stderr, and the drain on shutdown. */
#include "server.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct http_server {
    server *srv;
    struct MHD_Daemon *daemon;
    atomic_int in_flight;        /* requests begun and not yet completed */
    int32_t port;
};

/* One request's state, from its first byte to the completion callback. */
typedef struct request {
    http_server *h;
    char *body;
    size_t len, cap;
    bool too_large;
    bool answered;
    int status, items;
    double t0;
    char method[16], url[256];
} request;

static double now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Constant-time comparison, so the key cannot be guessed byte by byte
 * from response times. */
static bool same_secret(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    unsigned diff = (unsigned)(na ^ nb);
    for (size_t i = 0; i < na; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)b[i % (nb ? nb : 1)];
    return diff == 0 && nb > 0;
}

static bool authorised(http_server *h, struct MHD_Connection *c)
{
    const char *key = h->srv->opt.api_key;
    if (!key)
        return true;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
        return false;
    return same_secret(auth + 7, key);
}

/* ---- server-sent events -------------------------------------------------- */

static ssize_t sse_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    long n = sse_read(cls, buf, max);
    return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : (ssize_t)n;
}

static void sse_free(void *cls) { sse_close(cls); }

/* ---- replies ------------------------------------------------------------- */

static enum MHD_Result send_reply(struct MHD_Connection *c, request *rq, http_reply *r)
{
    struct MHD_Response *resp;
    if (r->stream) {
        sse_stream *st = sse_open(rq->h->srv, r->stream, r->stream_info);
        resp = st ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_reader, st,
                                                      sse_free)
                  : NULL;
        if (!resp) {
            if (st)
                sse_close(st);
            reply_error(r, 500, "out_of_memory", "out of memory for the stream");
            r->stream = NULL;
            return send_reply(c, rq, r);
        }
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
    } else {
        char *body = r->body ? r->body : strdup("");
        size_t len = body ? strlen(body) : 0;
        resp = body ? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE) : NULL;
        r->body = NULL;
        if (!resp) {
            free(body);
            return MHD_NO;
        }
        MHD_add_response_header(resp, "Content-Type",
                                r->content_type ? r->content_type : "application/json");
    }
    if (r->status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    if (r->retry_after > 0) {
        char s[16];
        snprintf(s, sizeof s, "%d", r->retry_after);
        MHD_add_response_header(resp, "Retry-After", s);
    }
    if (r->status == 405)
        MHD_add_response_header(resp, "Allow", strcmp(rq->method, "GET") ? "GET" : "POST");
    rq->status = r->status;
    rq->items = r->items;
    rq->answered = true;
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)r->status, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* The routes: path, method, handler. A known path with another method is
 * 405; an unknown path 404. */
static void route(http_server *h, request *rq, http_reply *r)
{
    server *srv = h->srv;
    bool get = strcmp(rq->method, "GET") == 0, post = strcmp(rq->method, "POST") == 0;
    const char *u = rq->url;
    bool is_get_route = !strcmp(u, "/health") || !strcmp(u, "/v1/models");
    bool is_post_route =
        !strcmp(u, "/v1/embeddings") || !strcmp(u, "/embed") || !strcmp(u, "/v1/completions");
    if (!is_get_route && !is_post_route) {
        reply_error(r, 404, "not_found", "no route %s %s (routes: GET /health, GET /v1/models, "
                    "POST /v1/embeddings, POST /embed, POST /v1/completions)", rq->method, u);
    } else if ((is_get_route && !get) || (is_post_route && !post)) {
        reply_error(r, 405, "method_not_allowed", "%s takes %s, not %s", u,
                    is_get_route ? "GET" : "POST", rq->method);
    } else if (!strcmp(u, "/health")) {
        route_health(srv, r);
    } else if (!strcmp(u, "/v1/models")) {
        route_models(srv, r);
    } else if (!strcmp(u, "/v1/completions")) {
        if (srv->lm)
            route_completions(srv, rq->body, rq->len, r);
        else
            reply_error(r, 404, "model_not_loaded",
                        "no language model is loaded (start the server with --lm DIR)");
    } else if (!srv->embed) {
        reply_error(r, 404, "model_not_loaded",
                    "no embedding model is loaded (start the server with --model DIR)");
    } else if (!strcmp(u, "/embed")) {
        route_tei_embed(srv, rq->body, rq->len, r);
    } else {
        route_embeddings(srv, rq->body, rq->len, r);
    }
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version,
                                  const char *upload, size_t *upload_size, void **con_cls)
{
    (void)version;
    http_server *h = cls;
    request *rq = *con_cls;
    http_reply r;
    memset(&r, 0, sizeof r);
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        rq->h = h;
        rq->t0 = now_ms();
        snprintf(rq->method, sizeof rq->method, "%s", method);
        snprintf(rq->url, sizeof rq->url, "%s", url);
        *con_cls = rq;
        atomic_fetch_add(&h->in_flight, 1);
        /* Refused before the body is read: a wrong key, and a declared
         * length over the limit. */
        if (!authorised(h, c)) {
            reply_error(&r, 401, "invalid_api_key",
                        "a valid API key is needed: Authorization: Bearer KEY");
            return send_reply(c, rq, &r);
        }
        const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > (unsigned long long)h->srv->opt.max_body) {
            reply_error(&r, 413, "body_too_large", "the body (%s bytes) is over the limit of "
                        "%lld bytes (--max-body-bytes)", cl, (long long)h->srv->opt.max_body);
            return send_reply(c, rq, &r);
        }
        return MHD_YES;
    }
    if (rq->answered) {
        *upload_size = 0; /* the reply is queued; the rest of the body is dropped */
        return MHD_YES;
    }
    if (*upload_size > 0) {
        size_t n = *upload_size;
        *upload_size = 0;
        if (rq->too_large || rq->len + n > (size_t)h->srv->opt.max_body) {
            rq->too_large = true;
            return MHD_YES;
        }
        if (rq->len + n + 1 > rq->cap) {
            size_t cap = (rq->len + n + 1) * 2;
            char *b = realloc(rq->body, cap);
            if (!b)
                return MHD_NO;
            rq->body = b, rq->cap = cap;
        }
        memcpy(rq->body + rq->len, upload, n);
        rq->len += n;
        rq->body[rq->len] = '\0';
        return MHD_YES;
    }
    if (rq->too_large)
        reply_error(&r, 413, "body_too_large", "the body is over the limit of %lld bytes "
                    "(--max-body-bytes)", (long long)h->srv->opt.max_body);
    else
        route(h, rq, &r);
    return send_reply(c, rq, &r);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode why)
{
    (void)c;
    http_server *h = cls;
    request *rq = *con_cls;
    if (!rq)
        return;
    fprintf(stderr, "clattn-server: %s %s %d items=%d %.1f ms%s\n", rq->method, rq->url,
            rq->answered ? rq->status : 0, rq->items, now_ms() - rq->t0,
            why == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    free(rq->body);
    free(rq);
    *con_cls = NULL;
    atomic_fetch_sub(&h->in_flight, 1);
}

bool http_start(server *srv, http_server **out)
{
    *out = NULL;
    http_server *h = calloc(1, sizeof *h);
    if (!h)
        return false;
    h->srv = srv;
    char port[16];
    snprintf(port, sizeof port, "%d", srv->opt.port);
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gai = getaddrinfo(srv->opt.host, port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "clattn-server: --host %s: %s\n", srv->opt.host, gai_strerror(gai));
        free(h);
        return false;
    }
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION |
                     MHD_USE_ITC | MHD_USE_ERROR_LOG;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    h->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, h, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, h, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)srv->opt.threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)120,
        MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!h->daemon) {
        fprintf(stderr, "clattn-server: cannot listen on %s:%d (in use, or not an address of "
                "this machine)\n", srv->opt.host, srv->opt.port);
        free(h);
        return false;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(h->daemon, MHD_DAEMON_INFO_BIND_PORT);
    h->port = info ? info->port : srv->opt.port;
    *out = h;
    return true;
}

int32_t http_port(const http_server *h) { return h->port; }

void http_stop(http_server *h)
{
    if (!h)
        return;
    /* No new connections; the requests in flight finish. */
    MHD_socket s = MHD_quiesce_daemon(h->daemon);
    if (s != MHD_INVALID_SOCKET)
        close(s);
    double until = now_ms() + 1e3 * h->srv->opt.drain_s;
    while (atomic_load(&h->in_flight) > 0 && now_ms() < until)
        nanosleep(&(struct timespec){0, 10000000L}, NULL);
    int left = atomic_load(&h->in_flight);
    if (left > 0)
        fprintf(stderr, "clattn-server: %d requests still running after %d s; closing them\n",
                left, h->srv->opt.drain_s);
    MHD_stop_daemon(h->daemon);
    free(h);
}
