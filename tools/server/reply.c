/* reply.c - the routes' replies: JSON bodies, OpenAI-shaped errors and
 * the parsing of request bodies. No HTTP here (http.c sends the replies),
 * so the fuzzer (tests/fuzz/fuzz_server_routes.c) links the routes with
 * this file alone. */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void reply_json(http_reply *r, int status, json_t *v)
{
    r->status = status;
    /* 9 significant digits give every float32 back exactly. */
    r->body = v ? json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9)) : NULL;
    json_decref(v);
    r->content_type = "application/json";
    if (!r->body) {
        r->status = 500;
        r->body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                         "\"code\":\"out_of_memory\"}}");
    }
}

void reply_error(http_reply *r, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *type = status == 401   ? "authentication_error"
                       : status >= 500 ? "server_error"
                                       : "invalid_request_error";
    json_t *v = json_pack("{s:{s:s,s:s,s:s}}", "error", "message", msg, "type", type, "code",
                          code);
    free(r->body);
    r->body = NULL;
    reply_json(r, v ? status : 500, v);
}

bool parse_json_object(const char *body, size_t len, http_reply *r, json_t **out)
{
    json_error_t e;
    json_t *v = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &e);
    if (!v) {
        reply_error(r, 400, "invalid_json", "the body is not valid JSON: %s (line %d, column %d)",
                    e.text, e.line, e.column);
        return false;
    }
    if (!json_is_object(v)) {
        json_decref(v);
        reply_error(r, 400, "invalid_json", "the body must be a JSON object");
        return false;
    }
    *out = v;
    return true;
}
