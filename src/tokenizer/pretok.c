/* pretok.c - the character-level half of the BPE tokenizers: lossy UTF-8
 * decoding, the split regexes of GPT-2, Llama 3 and Qwen2 as hand-written
 * matchers, and ByteLevel's byte <-> character map.
 *
 * The tokenizers crate runs these patterns with Oniguruma: alternatives are
 * tried left to right and the first that matches wins (not the longest),
 * quantifiers are greedy with backtracking. Each matcher below follows one
 * pattern alternative by alternative; the comments give the alternative
 * and what backtracking leaves of it. Character classes: \s is Unicode
 * White_Space, \p{L} the L* categories, \p{N} the N* categories. */
#include "tokenizer/tokenizer.h"

#include <string.h>
#include <utf8proc.h>

/* ---- UTF-8 -------------------------------------------------------------- */

size_t clattn__utf8_decode_lossy(const unsigned char *s, size_t len, uint32_t *out)
{
    size_t n = 0, i = 0;
    while (i < len) {
        unsigned c = s[i];
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        }
        /* The sequence c starts: its length and the range of its second
         * byte (the others are 80..BF); need 0: c starts none. */
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
            lo = c == 0xE0 ? 0xA0 : 0x80;
            hi = c == 0xED ? 0x9F : 0xBF;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
            lo = c == 0xF0 ? 0x90 : 0x80;
            hi = c == 0xF4 ? 0x8F : 0xBF;
        }
        size_t k = 1;
        for (; k <= need && i + k < len; k++) {
            unsigned b = s[i + k];
            if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF))
                break;
            cp = (cp << 6) | (b & 0x3F);
        }
        if (need && k == need + 1) {
            out[n++] = cp;
        } else {
            /* The maximal subpart: the lead byte and the continuation
             * bytes that fit it, one U+FFFD in all. */
            out[n++] = 0xFFFD;
        }
        i += k;
    }
    return n;
}

/* ---- classes ------------------------------------------------------------ */

bool clattn__re_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool clattn__re_letter(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

bool clattn__re_number(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* [^\s\p{L}\p{N}] */
static bool is_other(uint32_t c)
{
    return !clattn__re_space(c) && !clattn__re_letter(c) && !clattn__re_number(c);
}

/* ---- the patterns ------------------------------------------------------- */

static const char GPT2_RE[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char LLAMA3_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN2_RE[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool clattn__split_re_lookup(const char *pattern, clattn__split_re *out)
{
    if (strcmp(pattern, GPT2_RE) == 0)
        *out = CLATTN__RE_GPT2;
    else if (strcmp(pattern, LLAMA3_RE) == 0)
        *out = CLATTN__RE_LLAMA3;
    else if (strcmp(pattern, QWEN2_RE) == 0)
        *out = CLATTN__RE_QWEN2;
    else
        return false;
    return true;
}

/* 's 't 're 've 'm 'll 'd at s[i]: the match length, 0 if none. fold:
 * case-insensitive as Oniguruma's (?i:), where U+017F (long s) folds to s. */
static size_t contraction(const uint32_t *s, size_t n, size_t i, bool fold)
{
    if (s[i] != '\'' || i + 1 >= n)
        return 0;
    uint32_t a = s[i + 1], b = i + 2 < n ? s[i + 2] : 0;
    if (fold) {
        a = a == 0x17F ? 's' : (a >= 'A' && a <= 'Z') ? a + 32 : a;
        b = b == 0x17F ? 's' : (b >= 'A' && b <= 'Z') ? b + 32 : b;
    }
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* The run of class members from s[i]: its end. */
static size_t run(const uint32_t *s, size_t n, size_t i, bool (*in)(uint32_t))
{
    while (i < n && in(s[i]))
        i++;
    return i;
}

/* \s+(?!\S)|\s+ at a whitespace s[i]: the whole run when it ends the text
 * or ... (the lookahead: what follows is not a non-space), else the run
 * less its last character, but never less than one. */
static size_t space_tail(const uint32_t *s, size_t n, size_t i)
{
    size_t e = run(s, n, i, clattn__re_space);
    if (e == n || e - i == 1)
        return e - i;
    return e - 1 - i;
}

static bool not_crlf_ln(uint32_t c)
{
    return c != '\r' && c != '\n' && !clattn__re_letter(c) && !clattn__re_number(c);
}

static bool is_crlf(uint32_t c)
{
    return c == '\r' || c == '\n';
}

size_t clattn__split_re_match(clattn__split_re re, const uint32_t *s, size_t n, size_t i)
{
    uint32_t c = s[i], d = i + 1 < n ? s[i + 1] : 0;
    bool has_d = i + 1 < n;
    size_t k = contraction(s, n, i, re != CLATTN__RE_GPT2);
    if (k)
        return k;
    if (re == CLATTN__RE_GPT2) {
        /* ' ?\p{L}+', ' ?\p{N}+', ' ?[^\s\p{L}\p{N}]+' */
        bool (*cls[3])(uint32_t) = {clattn__re_letter, clattn__re_number, is_other};
        for (int a = 0; a < 3; a++) {
            if (c == ' ' && has_d && cls[a](d))
                return run(s, n, i + 1, cls[a]) - i;
            if (cls[a](c))
                return run(s, n, i, cls[a]) - i;
        }
        return space_tail(s, n, i);
    }
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (not_crlf_ln(c) && has_d && clattn__re_letter(d))
        return run(s, n, i + 1, clattn__re_letter) - i;
    if (clattn__re_letter(c))
        return run(s, n, i, clattn__re_letter) - i;
    /* \p{N}{1,3} (Llama 3) or \p{N} (Qwen2) */
    if (clattn__re_number(c)) {
        size_t e = run(s, n, i, clattn__re_number), most = re == CLATTN__RE_LLAMA3 ? 3 : 1;
        return e - i < most ? e - i : most;
    }
    /* ' ?[^\s\p{L}\p{N}]+[\r\n]*' */
    size_t j = (c == ' ' && has_d && is_other(d)) ? i + 1 : i;
    if (is_other(s[j])) {
        size_t e = run(s, n, j, is_other);
        return run(s, n, e, is_crlf) - i;
    }
    /* \s*[\r\n]+ : backtracking leaves the whitespace run up to and
     * including its last \r or \n. */
    size_t e = run(s, n, i, clattn__re_space);
    for (size_t p = e; p > i; p--)
        if (is_crlf(s[p - 1]))
            return p - i;
    return space_tail(s, n, i);
}

/* ---- ByteLevel ------------------------------------------------------------ */

/* GPT-2's bytes_to_unicode: the printable bytes (! .. ~, ¡ .. ¬, ® .. ÿ)
 * stand for themselves, the other 68 take U+0100.. in byte order. */
static bool printable(unsigned b)
{
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t clattn__byte_to_char(unsigned char b)
{
    if (printable(b))
        return b;
    uint32_t k = 0;
    for (unsigned x = 0; x < b; x++)
        k += !printable(x);
    return 0x100 + k;
}

int clattn__char_to_byte(uint32_t c)
{
    if (c < 0x100)
        return printable(c) ? (int)c : -1;
    if (c >= 0x100 + 68)
        return -1;
    uint32_t k = c - 0x100;
    for (unsigned x = 0; x < 256; x++)
        if (!printable(x) && k-- == 0)
            return (int)x;
    return -1;
}
