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

#include <stdlib.h>
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

bool clattn__utf8_valid(const unsigned char *s, size_t n)
{
    uint32_t *tmp = malloc((n + 1) * sizeof *tmp);
    if (!tmp)
        return false;
    size_t m = clattn__utf8_decode_lossy(s, n, tmp);
    bool ok = true;
    size_t bytes = 0;
    for (size_t i = 0; i < m && ok; i++) {
        char u[4];
        bytes += clattn__utf8_encode(tmp[i], u);
        /* A U+FFFD is only real when the input spells it. */
        ok = tmp[i] != 0xFFFD || (bytes <= n && memcmp(s + bytes - 3, "\xEF\xBF\xBD", 3) == 0);
    }
    free(tmp);
    return ok && bytes == n;
}

/* ---- classes ------------------------------------------------------------ */

bool clattn__re_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* The letters and numbers Oniguruma in the tokenizers crate (Unicode 16)
 * knows and utf8proc 2.8 (Unicode 15) does not: all code points utf8proc
 * calls unassigned (Garay, Gurung Khema, Kirat Rai, Sunuwar, Tulu-Tigalari,
 * CJK extension I, ...). Found by comparing the two on every code point
 * (test_bpe checks a hash of the crate's classes of all of them). */
typedef struct cp_range {
    uint32_t lo, hi;
} cp_range;

static const cp_range NEW_LETTERS[] = {
    {0x1C89, 0x1C8A}, {0xA7CB, 0xA7CD}, {0xA7DA, 0xA7DC}, {0x105C0, 0x105F3}, {0x10D4A, 0x10D65},
    {0x10D6F, 0x10D85}, {0x10EC2, 0x10EC4}, {0x11380, 0x11389}, {0x1138B, 0x1138B},
    {0x1138E, 0x1138E}, {0x11390, 0x113B5}, {0x113B7, 0x113B7}, {0x113D1, 0x113D1},
    {0x113D3, 0x113D3}, {0x11BC0, 0x11BE0}, {0x13460, 0x143FA}, {0x16100, 0x1611D},
    {0x16D40, 0x16D6C}, {0x18CFF, 0x18CFF}, {0x1E5D0, 0x1E5ED}, {0x1E5F0, 0x1E5F0},
    {0x2EBF0, 0x2EE5D}};

static const cp_range NEW_NUMBERS[] = {
    {0x10D40, 0x10D49}, {0x116D0, 0x116E3}, {0x11BF0, 0x11BF9}, {0x16130, 0x16139},
    {0x16D70, 0x16D79}, {0x1CCF0, 0x1CCF9}, {0x1E5F1, 0x1E5FA}};

static bool in_ranges(const cp_range *r, size_t n, uint32_t c)
{
    for (size_t i = 0; i < n; i++)
        if (c >= r[i].lo && c <= r[i].hi)
            return true;
    return false;
}

bool clattn__re_letter(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_CN && c >= 0x1C89)
        return in_ranges(NEW_LETTERS, sizeof NEW_LETTERS / sizeof NEW_LETTERS[0], c);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
           k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}

bool clattn__re_number(uint32_t c)
{
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    if (k == UTF8PROC_CATEGORY_CN && c >= 0x10D40)
        return in_ranges(NEW_NUMBERS, sizeof NEW_NUMBERS / sizeof NEW_NUMBERS[0], c);
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
