/* test_cache_hardening.c - the kernel binary cache against a hostile or
 * broken directory (issue #17). Each case damages the cache in one way,
 * then creates a context on it and runs a small op (attention, then a
 * softmax of its output): the result must equal, bit for bit, the result
 * of a context without a cache, creation must succeed, and a damaged entry
 * must be a miss (rebuilt) with a line in the log, never a hit.
 *
 * Cases: folders created 0700 and entries 0600; random bytes; truncated
 * entries (0, 7, 16 bytes, half); binaries swapped between entries (with
 * either entry's hash); a valid entry of another device under a matching
 * name; a FIFO and a symlink in place of entries (a FIFO must not hang:
 * alarm); a directory writable by others, an entry writable by others, a
 * directory owned by another user; a read-only directory (/proc, which even
 * root cannot write); a missing parent; writes that fail part-way
 * (a test hook: ENOSPC after 3000 bytes); and two processes building every program at
 * once on an empty directory. */
#define _GNU_SOURCE
#include "core/core.h"
#include "testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The small op: q, k, v [1, 2, 16, 32]; out = softmax(sdpa(q, k, v)). */
#define B 1
#define H 2
#define N 16
#define D 32
#define NUMEL (B * H * N * D)

static char tmpdir[256];
static int cache_warnings; /* "cache:" lines at WARN in the log */

static void count_log(void *user, clattn_log_level level, const char *msg)
{
    (void)user;
    if (level >= CLATTN_LOG_WARN && strncmp(msg, "cache:", 6) == 0)
        cache_warnings++;
}

static clattn_ctx *make_ctx(const char *cache_dir)
{
    clattn_ctx_params p = clattn_ctx_params_default();
    p.cache_dir = cache_dir;
    p.gemm_tuning = false; /* not what is tested; keeps each context fast */
    p.log = count_log;
    p.log_level = CLATTN_LOG_WARN;
    clattn_ctx *ctx = NULL;
    CHECK_OK(clattn_ctx_create(&p, &ctx));
    return ctx;
}

static clattn_build_stats stats_of(clattn_ctx *ctx)
{
    clattn_build_stats s;
    memset(&s, 0, sizeof s);
    if (ctx)
        clattn_ctx_build_stats(ctx, &s);
    return s;
}

/* Runs the small op on ctx into out[NUMEL]; false on any error. */
static bool small_op(clattn_ctx *ctx, float *out)
{
    if (!ctx)
        return false;
    float *x = test_fvec(3 * NUMEL);
    test_seed(17);
    test_fill_uniform(x, 3 * NUMEL, -1.0f, 1.0f);
    int64_t shape[4] = {B, H, N, D};
    clattn_tensor *q = test_tensor(ctx, 4, shape, x), *k = test_tensor(ctx, 4, shape, x + NUMEL),
                  *v = test_tensor(ctx, 4, shape, x + 2 * NUMEL),
                  *o = test_tensor(ctx, 4, shape, NULL);
    clattn_sdpa_params p = clattn_sdpa_params_default();
    bool ok = clattn_sdpa(ctx, q, k, v, o, &p) == CLATTN_OK &&
              clattn_softmax(ctx, o, o) == CLATTN_OK && clattn_tensor_read(o, out) == CLATTN_OK;
    if (!ok)
        fprintf(stderr, "small op failed: %s\n", clattn_last_error());
    clattn_tensor_destroy(q);
    clattn_tensor_destroy(k);
    clattn_tensor_destroy(v);
    clattn_tensor_destroy(o);
    free(x);
    return ok;
}

/* The double-precision reference of the small op. */
static void small_op_ref(double *ref)
{
    float *x = test_fvec(3 * NUMEL);
    test_seed(17);
    test_fill_uniform(x, 3 * NUMEL, -1.0f, 1.0f);
    const float *q = x, *k = x + NUMEL, *v = x + 2 * NUMEL;
    double scale = 1.0 / sqrt((double)D);
    for (int h = 0; h < B * H; h++)
        for (int i = 0; i < N; i++) {
            double s[N], mx = -INFINITY, sum = 0;
            for (int j = 0; j < N; j++) {
                double dot = 0;
                for (int d = 0; d < D; d++)
                    dot += (double)q[(h * N + i) * D + d] * k[(h * N + j) * D + d];
                s[j] = dot * scale;
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < N; j++)
                sum += (s[j] = exp(s[j] - mx));
            double *row = ref + (h * N + i) * D, rmx = -INFINITY, rsum = 0;
            for (int d = 0; d < D; d++) {
                row[d] = 0;
                for (int j = 0; j < N; j++)
                    row[d] += s[j] / sum * v[(h * N + j) * D + d];
                rmx = fmax(rmx, row[d]);
            }
            for (int d = 0; d < D; d++)
                rsum += (row[d] = exp(row[d] - rmx));
            for (int d = 0; d < D; d++)
                row[d] /= rsum;
        }
    free(x);
}

static float expected[NUMEL];

/* A context on dir runs the op and matches the cache-less result bit for
 * bit; returns its build stats. */
static clattn_build_stats run_case(const char *what, const char *dir)
{
    clattn_ctx *ctx = make_ctx(dir);
    float got[NUMEL];
    memset(got, 0, sizeof got);
    bool ok = small_op(ctx, got);
    CHECK(ok && memcmp(got, expected, sizeof got) == 0,
          "%s: result differs from the cache-less run", what);
    clattn_build_stats s = stats_of(ctx);
    fprintf(stderr, "  %-40s %2d from source, %2d from cache, %d cache warnings\n", what,
            s.programs_from_source, s.programs_from_cache, cache_warnings);
    clattn_ctx_destroy(ctx);
    return s;
}

/* Calls fn(path) for every entry (not the temporaries); returns how many. */
static int each_entry(const char *dir, void (*fn)(const char *path, int i))
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name);
        if (e->d_name[0] == '.' || len < 4 || strcmp(e->d_name + len - 4, ".bin") != 0)
            continue;
        char path[600];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path, n++);
    }
    closedir(d);
    return n;
}

static int count_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (!d)
        return 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, ".tmp-", 5) == 0;
    closedir(d);
    return n;
}

static unsigned char *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    *n = fread(b, 1, (size_t)len, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const void *data, size_t n)
{
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, data, n) != (ssize_t)n) {
        fprintf(stderr, "FAIL: cannot write %s\n", path);
        exit(1);
    }
    close(fd);
}

static void random_bytes(const char *path, int i)
{
    unsigned char b[4096];
    test_seed(100 + (uint64_t)i);
    for (size_t j = 0; j < sizeof b; j++)
        b[j] = (unsigned char)test_uniform(0.0f, 256.0f);
    write_file(path, b, sizeof b / (size_t)(1 + i % 4));
}

static void truncate_to(const char *path, int i)
{
    static const off_t sizes[] = {0, 7, 16, -1};
    size_t n = 0;
    free(read_file(path, &n));
    off_t len = sizes[i % 4] >= 0 ? sizes[i % 4] : (off_t)(n / 2);
    if (truncate(path, len) != 0)
        fprintf(stderr, "truncate failed\n");
}

/* Entry layout (cache.c): magic 8 | key length 8 | key | binary length 8 |
 * digest 32 | binary. */
typedef struct entry {
    unsigned char *bytes;
    size_t size, key_len, bin_at;
} entry;

static bool parse_entry(const char *path, entry *e)
{
    e->bytes = read_file(path, &e->size);
    if (!e->bytes || e->size < 16)
        return false;
    uint64_t k = 0;
    for (int i = 7; i >= 0; i--)
        k = k << 8 | e->bytes[8 + i];
    e->key_len = (size_t)k;
    e->bin_at = 16 + e->key_len + 8 + 32;
    return e->bin_at < e->size;
}

/* Entry paths, gathered for the swap. */
static char entry_paths[64][600];
static int n_entry_paths;
static void gather(const char *path, int i)
{
    if (i < 64) {
        snprintf(entry_paths[i], sizeof entry_paths[i], "%s", path);
        n_entry_paths = i + 1;
    }
}

/* Pristine copies of every entry (taken before any damage), so a swap
 * can take another entry's bytes. */
static entry pristine[64];

/* Entry i gets entry i+1's binary, with entry i+1's length and digest
 * (keep_digest) or its own digest: under the old FNV scheme the first form
 * was a hit that ran the wrong program. */
static void swap_one(const char *path, int i, bool keep_digest)
{
    entry *a = &pristine[i], *b = &pristine[(i + 1) % n_entry_paths];
    size_t head = 16 + a->key_len, bin = b->size - b->bin_at;
    unsigned char *out = malloc(head + 40 + bin);
    memcpy(out, a->bytes, head);
    memcpy(out + head, b->bytes + 16 + b->key_len, 8); /* binary length */
    const unsigned char *digest = keep_digest ? b->bytes + 16 + b->key_len + 8
                                              : a->bytes + head + 8;
    memcpy(out + head + 8, digest, 32);
    memcpy(out + head + 40, b->bytes + b->bin_at, bin);
    write_file(path, out, head + 40 + bin);
    free(out);
}
static void swap_own_digest(const char *path, int i) { swap_one(path, i, false); }
static void swap_with_digest(const char *path, int i) { swap_one(path, i, true); }

/* A whole, valid entry for another device (its key says so), with a
 * correct digest, under each entry's name: the key compare makes it a miss. */
static void other_device(const char *path, int i)
{
    (void)i;
    entry e;
    if (!parse_entry(path, &e))
        return;
    char *key = malloc(e.key_len + 32);
    int kl = snprintf(key, e.key_len + 32, "%.*s", (int)e.key_len, (const char *)e.bytes + 16);
    char *dev = strstr(key, "device: ");
    if (dev)
        memcpy(dev + 8, "OTHER", 5); /* same length, another device */
    size_t bin = e.size - e.bin_at;
    unsigned char n8[8];
    clattn__sha256_state s;
    clattn__sha256_init(&s);
    for (int b = 0; b < 8; b++)
        n8[b] = (unsigned char)((uint64_t)kl >> (8 * b));
    clattn__sha256_update(&s, n8, 8);
    clattn__sha256_update(&s, key, (size_t)kl);
    for (int b = 0; b < 8; b++)
        n8[b] = (unsigned char)((uint64_t)bin >> (8 * b));
    clattn__sha256_update(&s, n8, 8);
    clattn__sha256_update(&s, e.bytes + e.bin_at, bin);
    memcpy(e.bytes + 16, key, (size_t)kl);
    clattn__sha256_final(&s, e.bytes + 16 + e.key_len + 8);
    write_file(path, e.bytes, e.size);
    free(key);
    free(e.bytes);
}

static void make_fifo(const char *path, int i)
{
    (void)i;
    unlink(path);
    if (mkfifo(path, 0600) != 0)
        fprintf(stderr, "mkfifo failed: %s\n", strerror(errno));
}

static char symlink_target[600];
static void make_symlink(const char *path, int i)
{
    (void)i;
    unlink(path);
    if (symlink(symlink_target, path) != 0)
        fprintf(stderr, "symlink failed\n");
}

static void world_writable(const char *path, int i)
{
    (void)i;
    chmod(path, 0666);
}

static void check_mode(const char *path, int i)
{
    (void)i;
    struct stat st;
    CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "%s: mode %o, want 600", path,
          (unsigned)(st.st_mode & 0777));
}

static void all_modes_0600(const char *dir) { each_entry(dir, check_mode); }

static void rm_rf(const char *dir)
{
    char cmd[700];
    snprintf(cmd, sizeof cmd, "chmod -R u+rwx '%s' 2>/dev/null; rm -rf '%s'", dir, dir);
    if (system(cmd) != 0)
        fprintf(stderr, "warning: could not remove %s\n", dir);
}

/* A child: creates a context on dir, runs the op and writes its result to
 * fd; exit status 0 when it ran. */
static void child_run(const char *dir, int fd)
{
    clattn_ctx *ctx = make_ctx(dir);
    float got[NUMEL];
    bool ok = small_op(ctx, got);
    clattn_ctx_destroy(ctx);
    ok = ok && write(fd, got, sizeof got) == (ssize_t)sizeof got;
    _exit(ok && test_failures == 0 ? 0 : 1);
}

/* Waits for pid; true when it exited 0 and its result (read from fd) is
 * the expected one. */
static bool child_result(pid_t pid, int fd, const char *what)
{
    float got[NUMEL];
    size_t have = 0;
    while (have < sizeof got) {
        ssize_t r = read(fd, (char *)got + have, sizeof got - have);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    close(fd);
    int status = 0;
    waitpid(pid, &status, 0);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && have == sizeof got &&
              memcmp(got, expected, sizeof got) == 0;
    CHECK(ok, "%s: child status %d (signal %d), %zu result bytes, result %s", what,
          WIFEXITED(status) ? WEXITSTATUS(status) : -1,
          WIFSIGNALED(status) ? WTERMSIG(status) : 0, have,
          have == sizeof got && memcmp(got, expected, sizeof got) == 0 ? "equal" : "differs");
    return ok;
}

/* Children run as fresh processes (fork, then exec of this program with
 * "--child DIR FD"): a child that only forked would inherit an
 * OpenCL runtime whose worker threads did not come along (POCL hangs). */
static const char *self_path;
static pid_t spawn(const char *dir, int *fd)
{
    int p[2];
    if (pipe(p) != 0)
        exit(1);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        char fdtext[16];
        snprintf(fdtext, sizeof fdtext, "%d", p[1]);
        execl(self_path, self_path, "--child", dir, fdtext, (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    *fd = p[0];
    return pid;
}

static int child_main(char **argv)
{
    alarm(100);
    child_run(argv[2], atoi(argv[3]));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc > 3 && strcmp(argv[1], "--child") == 0)
        return child_main(argv);
    self_path = "/proc/self/exe";
    /* A FIFO opened the old way blocked forever; fail instead of hanging. */
    alarm(100);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/clattn-test-cache-hard-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        fprintf(stderr, "FAIL: mkdtemp\n");
        return 1;
    }

    /* The reference: a context without a cache, checked against doubles
     * (tolerance: float attention and softmax over 16 keys and 32 values
     * are good to a few ulp of values near 1/32; 1e-6 absolute catches any
     * wrong program, whose results are off by far more). */
    {
        clattn_ctx *ctx = make_ctx("off");
        CHECK(small_op(ctx, expected), "the cache-less op failed");
        clattn_ctx_destroy(ctx);
        double ref[NUMEL];
        small_op_ref(ref);
        test_close("cache-less op vs double reference", expected, ref, NUMEL, 1e-6, 1e-5);
    }

    /* Fresh: folders created 0700, entries 0600; then every program hits. */
    char parent[300], dir[320];
    snprintf(parent, sizeof parent, "%s/new", tmpdir);
    snprintf(dir, sizeof dir, "%s/cache", parent);
    clattn_build_stats cold = run_case("cold, folders created", dir);
    int total = cold.programs_from_source;
    CHECK(total > 0 && cold.programs_from_cache == 0, "cold: %d from source", total);
    struct stat st;
    CHECK(stat(parent, &st) == 0 && (st.st_mode & 0777) == 0700, "parent mode %o",
          (unsigned)(st.st_mode & 0777));
    CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700, "cache mode %o",
          (unsigned)(st.st_mode & 0777));
    all_modes_0600(dir);
    CHECK(each_entry(dir, gather) == total, "expected %d entries", total);
    cache_warnings = 0;
    clattn_build_stats warm = run_case("warm", dir);
    CHECK(warm.programs_from_cache == total && cache_warnings == 0, "warm: %d from cache",
          warm.programs_from_cache);

    /* Damaged entries, one kind of damage per entry in turn (11 entries,
     * 8 kinds: each kind hits at least one entry): all misses, each
     * logged, then rewritten whole. */
    {
        char other[320];
        snprintf(other, sizeof other, "%s/other", tmpdir); /* symlink targets */
        run_case("second cache, cold", other);
        n_entry_paths = 0;
        each_entry(other, gather);
        snprintf(symlink_target, sizeof symlink_target, "%s", entry_paths[0]);
    }
    static const struct {
        const char *what;
        void (*damage)(const char *path, int i);
    } damages[] = {
        {"random bytes", random_bytes},
        {"truncated (0, 7, 16 bytes, half)", truncate_to},
        {"other device, valid hash", other_device},
        {"FIFO", make_fifo},
        {"writable by others", world_writable},
        {"swapped binary, own hash", swap_own_digest},
        {"swapped binary and its hash", swap_with_digest},
        {"symlink to a valid entry", make_symlink},
    };
    enum { N_DAMAGES = sizeof damages / sizeof damages[0] };
    n_entry_paths = 0;
    each_entry(dir, gather);
    CHECK(n_entry_paths == total && total >= N_DAMAGES, "%d entries for %d kinds of damage",
          n_entry_paths, N_DAMAGES);
    for (int i = 0; i < n_entry_paths; i++)
        CHECK(parse_entry(entry_paths[i], &pristine[i]), "cannot parse %s", entry_paths[i]);
    for (int i = 0; i < n_entry_paths; i++) {
        damages[i % N_DAMAGES].damage(entry_paths[i], i / N_DAMAGES);
        fprintf(stderr, "  entry %2d: %s\n", i, damages[i % N_DAMAGES].what);
    }
    for (int i = 0; i < n_entry_paths; i++)
        free(pristine[i].bytes);
    cache_warnings = 0;
    clattn_build_stats sd = run_case("every entry damaged", dir);
    CHECK(sd.programs_from_cache == 0 && sd.programs_from_source == total,
          "damaged: %d from cache", sd.programs_from_cache);
    CHECK(cache_warnings >= total, "damaged: %d cache warnings for %d entries", cache_warnings,
          total);
    all_modes_0600(dir);
    cache_warnings = 0;
    clattn_build_stats again = run_case("  then rewritten", dir);
    CHECK(again.programs_from_cache == total && cache_warnings == 0,
          "rewritten entries hit %d of %d", again.programs_from_cache, total);

    /* A directory writable by others: neither read nor written. */
    {
        chmod(dir, 0777);
        cache_warnings = 0;
        clattn_build_stats s = run_case("directory mode 0777", dir);
        CHECK(s.programs_from_cache == 0 && cache_warnings > 0, "0777 dir: %d hits, %d warnings",
              s.programs_from_cache, cache_warnings);
        chmod(dir, 0700);
    }

    /* A directory owned by another user (root can chown; others skip). */
    if (geteuid() == 0) {
        if (chown(dir, 65534, 65534) == 0) {
            cache_warnings = 0;
            clattn_build_stats s = run_case("directory owned by uid 65534", dir);
            CHECK(s.programs_from_cache == 0 && cache_warnings > 0,
                  "foreign dir: %d hits, %d warnings", s.programs_from_cache, cache_warnings);
            CHECK(chown(dir, 0, 0) == 0, "chown back");
        }
    } else {
        fprintf(stderr, "  (not root: the foreign-owner case needs chown, skipped)\n");
    }

    /* Read-only: /proc cannot be written even by root; a path below a
     * regular file cannot be created; a missing parent is created. */
    cache_warnings = 0;
    run_case("read-only directory (/proc)", "/proc");
    CHECK(cache_warnings > 0, "read-only directory: no warning");
    if (geteuid() != 0) {
        chmod(dir, 0500);
        run_case("read-only directory (mode 0500)", dir);
        chmod(dir, 0700);
    }
    char missing[340];
    snprintf(missing, sizeof missing, "%s/missing/a/b", tmpdir);
    clattn_build_stats sm = run_case("missing parents", missing);
    CHECK(sm.programs_from_source == total, "missing parents: %d built", sm.programs_from_source);

    /* Failing writes (a full disk, through cache.c's test hook: every entry
     * stops at 3000 bytes, after its header, with ENOSPC): results are
     * right, each failed store is logged, no temporary is left, nothing is
     * stored; with the hook off the next context fills the cache. */
    {
        char full[320];
        snprintf(full, sizeof full, "%s/full", tmpdir);
        clattn__test_cache_write_limit(3000);
        cache_warnings = 0;
        clattn_build_stats s = run_case("writes failing after 3000 bytes", full);
        clattn__test_cache_write_limit(-1);
        CHECK(s.programs_from_source == total && cache_warnings >= total,
              "failed writes: %d built, %d warnings", s.programs_from_source, cache_warnings);
        CHECK(count_temporaries(full) == 0 && each_entry(full, check_mode) == 0,
              "failed writes: %d temporaries, %d entries left", count_temporaries(full),
              each_entry(full, check_mode));
        run_case("after failed writes, hook off", full);
        s = run_case("  then warm", full);
        CHECK(s.programs_from_cache == total, "after failed writes: %d hits",
              s.programs_from_cache);
    }

    /* Two processes building every program at once on an empty directory. */
    for (int round = 0; round < 1; round++) {
        char race[320];
        snprintf(race, sizeof race, "%s/race%d", tmpdir, round);
        int fa, fb;
        pid_t a = spawn(race, &fa), b = spawn(race, &fb);
        child_result(a, fa, "racing process A");
        child_result(b, fb, "racing process B");
        CHECK(count_temporaries(race) == 0, "race: temporaries left");
        cache_warnings = 0;
        clattn_build_stats s = run_case("after two racing processes", race);
        CHECK(s.programs_from_cache == total && cache_warnings == 0,
              "race: %d of %d from cache, %d warnings", s.programs_from_cache, total,
              cache_warnings);
    }

    rm_rf(tmpdir);
    return test_summary("test_cache_hardening");
}
