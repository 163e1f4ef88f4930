/* embed/embed.h - what bert.c and bert_config.c share: a BERT model
 * folder's settings (config.json and the sentence-transformers files). */
#ifndef CLATTN_BERT_INTERNAL_H
#define CLATTN_BERT_INTERNAL_H

#include "modules/modules.h"
#include "gemm/gemm.h"
#include "tokenizer/tokenizer.h"

typedef struct clattn__bert_config {
    int64_t hidden;             /* hidden_size: E */
    int64_t layers;             /* num_hidden_layers */
    int64_t heads;              /* num_attention_heads */
    int64_t intermediate;       /* intermediate_size */
    int64_t max_pos;            /* max_position_embeddings */
    int64_t type_vocab;         /* type_vocab_size */
    int64_t vocab;              /* vocab_size */
    clattn_activation act;      /* hidden_act */
    float eps;                  /* layer_norm_eps */
    clattn_pooling pooling;     /* 1_Pooling/config.json (MEAN without modules.json) */
    bool normalize;             /* a Normalize module in modules.json */
    int32_t max_seq_length;     /* sentence_bert_config.json; 0: not given */
} clattn__bert_config;

/* Reads dir/config.json, dir/modules.json and the pooling config it names,
 * and dir/sentence_bert_config.json. Errors name the file and the key. */
clattn_status clattn__bert_read_config(clattn_ctx *ctx, const char *dir, clattn__bert_config *c);

#endif
