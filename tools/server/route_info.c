/* route_info.c - GET /health and GET /v1/models. */
#include "server.h"

void route_health(server *srv, http_reply *r)
{
    json_t *v = json_pack("{s:s,s:b,s:b}", "status", "ok", "embeddings", srv->embed != NULL,
                          "completions", srv->lm != NULL);
    reply_json(r, 200, v);
}

/* OpenAI's model list: one entry per loaded model. */
void route_models(server *srv, http_reply *r)
{
    json_t *data = json_array();
    if (srv->embed)
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id",
                                              embed_queue_model_name(srv->embed), "object",
                                              "model", "created", 0, "owned_by", "clattn"));
    if (srv->lm)
        json_array_append_new(data, json_pack("{s:s,s:s,s:i,s:s}", "id",
                                              lm_scheduler_model_name(srv->lm), "object",
                                              "model", "created", 0, "owned_by", "clattn"));
    r->items = (int)json_array_size(data);
    reply_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}
