# tools/lib/sanitize.sh - sourced by tools/check: the sanitize stage.
#
# 1. The library, tests and tools built with gcc's -fsanitize=address,undefined
#    in their own build directory ($CLATTN_ASAN_BUILD_DIR, default
#    build-asan), and SANITIZE_TESTS run there on POCL with the small shapes.
# 2. test_threads and test_server (clattn-server under 32 concurrent
#    clients) built with -fsanitize=thread ($CLATTN_TSAN_BUILD_DIR, default
#    build-tsan; only what those two tests need) and run on POCL.
# Any report fails its test: every report goes to a file under
# <build>/sanitize-logs/<test>/ (so one from a tool that a Python test runs
# counts too), and the sanitizers exit with status 23 / 66. Suppressions, for
# other libraries' frames only, are in tools/lib/lsan.supp. UBSan and TSan
# need none: UBSan checks only the code built with it (clattn's), and TSan
# reports nothing on POCL 3.1 here.
# Uses and updates the globals passed/failed of tools/check.

# The tests under ASan + UBSan: breadth of clattn's host code (runtime and
# cache, safetensors and npy readers, both tokenizers, layers, losses,
# optimizers, checkpoints, modules, the embedder, the decoder models and
# sampling, training, and every tool through the Python tests, the server
# included). Left out, because their time goes to kernels (CLBlast's, or
# the large shapes) and the host code they would add is run by the tests
# above: test_gemm (61 s here, CLBlast's kernels),
# test_attention_backward and its _pytorch program, test_linear_lp(_large);
# test_cache_hardening (29 s of kernel rebuilds under ASan; its file
# handling is test_cache's, which runs here);
# test_attention_backward_memory skips itself under CLATTN_TEST_SMALL.
SANITIZE_TESTS=(
  test_sha256 test_context test_tensor test_cache
  test_memory readme_example test_weights_nonfinite test_safetensors test_npy
  test_tokenizer test_bpe test_sampling
  test_layers test_layer_ops test_linear_backward test_norm_backward
  test_embedding_backward test_dropout test_backward_errors
  test_attention test_classic test_attention_backward_errors test_decode_attention
  test_loss test_optimizers test_checkpoint test_train test_modules
  test_embed test_embed_attention test_embed_cli
  test_lm test_lm_attention test_generate_cli test_llama_export
  test_plot test_plots test_tool_errors test_server
)

# Prints the sanitizer environment for one test whose reports go to $1.
# $2: 1 to unwind every allocation fully (slow: 3-10x), 0 for the frame-
# pointer unwinder, which stops at the first library built without frame
# pointers (POCL, LLVM), so a leak made there shows only that frame.
sanitize_env() {
  local logs=$1 full=$2 supp="$PWD/tools/lib"
  echo "ASAN_OPTIONS=halt_on_error=1:exitcode=23:detect_leaks=1:log_path=$logs/asan:fast_unwind_on_malloc=$((1 - full)):malloc_context_size=64"
  echo "LSAN_OPTIONS=suppressions=$supp/lsan.supp:print_suppressions=0"
  echo "UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1:exitcode=23:log_path=$logs/ubsan"
}

# Runs meson test TEST in the ASan build with the reports in LOGS;
# $3 = 1 for full unwinding. Succeeds when the test passed and left no report.
sanitize_one() {
  local abuild=$1 t=$2 full=$3 logs="$1/sanitize-logs/$2"
  rm -rf "$logs"; mkdir -p "$logs"
  local envs; mapfile -t envs < <(sanitize_env "$PWD/$logs" "$full")
  env "${envs[@]}" OCL_ICD_VENDORS=/etc/OpenCL/vendors/pocl.icd CLATTN_DEVICE=pocl \
      CLATTN_TEST_SMALL=1 CLATTN_TEST_EMBED_SHORT=1 \
      meson test -C "$abuild" --no-rebuild --print-errorlogs --timeout-multiplier 3 \
      --logbase "sanitize-$t" "$t" >"$logs/meson.out" 2>&1 &&
    [ -z "$(find "$logs" -name 'asan.*' -o -name 'ubsan.*')" ]
}

run_sanitize_asan() {
  local abuild=${CLATTN_ASAN_BUILD_DIR:-build-asan}
  echo "== sanitize: ASan + UBSan in $abuild, ${#SANITIZE_TESTS[@]} tests on POCL" >&2
  if [ ! -f "$abuild/build.ninja" ]; then
    meson setup "$abuild" -Dbuildtype=debugoptimized -Db_sanitize=address,undefined \
      -Dc_args=-fno-omit-frame-pointer >&2 || { failed=$((failed + 1)); return; }
  fi
  if ! meson compile -C "$abuild" >"$abuild/sanitize-build.log" 2>&1; then
    tail -n 30 "$abuild/sanitize-build.log" >&2
    failed=$((failed + 1)); echo "   FAILED: build (see $abuild/sanitize-build.log)" >&2; return
  fi
  local t
  for t in "${SANITIZE_TESTS[@]}"; do
    if sanitize_one "$abuild" "$t" 0; then
      passed=$((passed + 1)); echo "   ok: $t" >&2; continue
    fi
    # A report or a failure: run it again with full stacks, so that a leak
    # inside POCL's compiler (a POCL kernel-cache miss) meets its exact
    # suppression, and any report in clattn shows its whole stack. The
    # rerun has an empty clattn cache, so clattn's cache-miss paths run.
    local fast="$abuild/sanitize-logs/$t.fast"
    rm -rf "$fast"; mv "$abuild/sanitize-logs/$t" "$fast"
    rm -rf "$abuild/sanitize-rerun-cache"
    if CLATTN_CACHE_DIR="$PWD/$abuild/sanitize-rerun-cache" sanitize_one "$abuild" "$t" 1; then
      passed=$((passed + 1)); echo "   ok: $t (after a rerun with full stacks; first run in $fast)" >&2
    else
      failed=$((failed + 1)); echo "   FAILED: $t (see $abuild/sanitize-logs/$t)" >&2
      tail -n 15 "$abuild/sanitize-logs/$t/meson.out" >&2
      find "$abuild/sanitize-logs/$t" -name '*san.*' -exec head -n 40 {} + >&2
    fi
  done
}

# Runs a program of the TSan build: $1 the build, $2 the test's name, the
# rest its command line.
sanitize_tsan_one() {
  local tbuild=$1 t=$2; shift 2
  local logs="$tbuild/sanitize-logs/$t"
  rm -rf "$logs"; mkdir -p "$logs"
  if env TSAN_OPTIONS="halt_on_error=1:exitcode=66:second_deadlock_stack=1:log_path=$PWD/$logs/tsan" \
       OCL_ICD_VENDORS=/etc/OpenCL/vendors/pocl.icd CLATTN_DEVICE=pocl \
       "$@" >"$logs/test.out" 2>&1 && [ -z "$(find "$logs" -name 'tsan.*')" ]; then
    passed=$((passed + 1)); echo "   ok: $t (TSan)" >&2
  else
    failed=$((failed + 1)); echo "   FAILED: $t under TSan (see $logs)" >&2
    tail -n 15 "$logs/test.out" >&2
    find "$logs" -name 'tsan.*' -exec head -n 40 {} + >&2
  fi
}

# test_threads and test_server under ThreadSanitizer, in their own build
# of only what they need.
run_sanitize_tsan() {
  local tbuild=${CLATTN_TSAN_BUILD_DIR:-build-tsan}
  echo "== sanitize: ThreadSanitizer in $tbuild, test_threads and test_server on POCL" >&2
  if [ ! -f "$tbuild/build.ninja" ]; then
    meson setup "$tbuild" -Dbuildtype=debugoptimized -Db_sanitize=thread >&2 ||
      { failed=$((failed + 1)); return; }
  fi
  if ! ninja -C "$tbuild" tests/core/test_threads tools/clattn-server tools/clattn-embed \
         tools/clattn-generate tools/clattn-tokenize >"$tbuild/sanitize-build.log" 2>&1; then
    tail -n 30 "$tbuild/sanitize-build.log" >&2
    failed=$((failed + 1)); echo "   FAILED: build (see $tbuild/sanitize-build.log)" >&2; return
  fi
  sanitize_tsan_one "$tbuild" test_threads "$tbuild/tests/core/test_threads" tests/fixtures
  # The short variant (no 640-request load test): its threads are the same.
  sanitize_tsan_one "$tbuild" test_server env CLATTN_TEST_EMBED_SHORT=1 \
    python3 tests/tools/test_server.py "$tbuild/tools" \
    models/all-MiniLM-L6-v2 tests/fixtures/lm/llama_gqa_f32
}

run_sanitize() {
  run_sanitize_asan
  run_sanitize_tsan
}
