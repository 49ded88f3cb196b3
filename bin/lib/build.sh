# shellcheck shell=bash
# Shared by the scripts in bin/ and tests/ (sourced, not run).
#
# build_binaries <cargo package> <bazel package> <binary>...
#   Builds the binaries with Bazel when `bazel` or `bazelisk` is on the PATH,
#   else with `cargo build --release`, and copies them into out/.

fail() {
  echo "error: $*" >&2
  exit 1
}

build_binaries() {
  local package=$1 bazel_package=$2
  shift 2
  local binaries=("$@") bazel
  bazel=$(command -v bazel || command -v bazelisk || true)
  mkdir -p out
  if [[ -n $bazel ]]; then
    local labels=("${binaries[@]/#/\/\/$bazel_package:}")
    "$bazel" build --config=release "${labels[@]}" ||
      fail "bazel build ${labels[*]} failed (its output is above)"
    local label file
    for label in "${labels[@]}"; do
      file=$("$bazel" cquery --config=release --output=files "$label" 2>/dev/null | head -n 1)
      [[ -f $file ]] || fail "bazel built $label but its output file was not found"
      copy_to_out "$file" "${label##*:}"
    done
  else
    command -v cargo >/dev/null ||
      fail "neither bazel/bazelisk nor cargo is on the PATH; install Rust from https://rustup.rs"
    echo "note: bazel/bazelisk not on the PATH; building with cargo build --release" >&2
    cargo build --release --locked -p "$package" "${binaries[@]/#/--bin=}" ||
      fail "cargo build --release -p $package failed (its output is above)"
    local binary
    for binary in "${binaries[@]}"; do
      copy_to_out "${CARGO_TARGET_DIR:-target}/release/$binary" "$binary"
    done
  fi
}

# Copies through a temporary name, so that a running out/<name> is replaced
# rather than written over ("text file busy").
copy_to_out() {
  if ! { cp "$1" "out/.$2.partial" && chmod 0755 "out/.$2.partial" && mv -f "out/.$2.partial" "out/$2"; }; then
    fail "cannot copy $1 to out/$2"
  fi
  echo "out/$2"
}
