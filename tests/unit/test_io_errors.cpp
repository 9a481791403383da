// Bad dumps: every defect gives a tq::Error with one line naming the file and the object.
// Each case starts from a valid reference dump and breaks exactly one thing with raw HDF5 calls.
#include <doctest/doctest.h>

#include <fstream>
#include <limits>

#include "test_io_util.h"

using namespace tq;
using namespace tq::test;

namespace {

/// A valid dump in a temp dir, to be broken by the test.
struct Broken {
  TempDir dir;
  std::string path = dir.file("bad.h5");
  explicit Broken(DType dtype = DType::F32) { RefDump().write(path, dtype); }
  std::string open_error() const {
    return error_of([&] { DumpReader r(path); });
  }
};

}  // namespace

TEST_CASE("io error: missing file") {
  TempDir dir;
  const std::string path = dir.file("nope.h5");
  const std::string msg = error_of([&] { DumpReader r(path); });
  CHECK(msg == path + ": no such file");
}

TEST_CASE("io error: a directory is not a dump") {
  TempDir dir;
  const std::string msg = error_of([&] { DumpReader r(dir.path().string()); });
  CHECK(msg == dir.path().string() + ": not a regular file");
}

TEST_CASE("io error: text file is not HDF5") {
  TempDir dir;
  const std::string path = dir.file("notes.h5");
  std::ofstream(path) << "this is not an HDF5 file\n";
  const std::string msg = error_of([&] { DumpReader r(path); });
  CHECK(msg == path + ": not an HDF5 file");
}

TEST_CASE("io error: truncated HDF5 file") {
  Broken b;
  const auto size = fs::file_size(b.path);
  fs::resize_file(b.path, size / 2);
  const std::string msg = b.open_error();
  // HDF5's own diagnosis is appended: "... (truncated file: eof = 22704, ...)".
  CHECK(contains(msg, b.path + ": cannot open HDF5 file (truncated file: eof = "));
}

TEST_CASE("io error: HDF5 file truncated anywhere fails cleanly at open") {
  Broken b;
  const auto size = fs::file_size(b.path);
  for (const auto cut : {size - 1, size * 3 / 4, size_t{2048}, size_t{100}, size_t{8}, size_t{0}}) {
    RefDump().write(b.path, DType::F32);
    fs::resize_file(b.path, cut);
    INFO("truncated to ", cut, " of ", size, " bytes");
    const std::string msg = b.open_error();
    CHECK(msg.rfind(b.path + ": ", 0) == 0);
  }
}

TEST_CASE("io error: missing format attribute") {
  Broken b;
  edit(b.path, [](hid_t f) { REQUIRE(H5Adelete(f, "format") >= 0); });
  const std::string msg = b.open_error();
  CHECK(contains(msg, b.path + ": not a tq KV dump (root attribute 'format' is missing"));
}

TEST_CASE("io error: wrong format") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::write_attr(f, "format", std::string("safetensors"), "t", "/"); });
  CHECK(b.open_error() ==
        b.path + ": not a tq KV dump (format=\"safetensors\", expected \"tq-kv-dump\")");
}

TEST_CASE("io error: format attribute of the wrong type") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::write_attr(f, "format", int64_t{1}, "t", "/"); });
  CHECK(b.open_error() == b.path + ": /: attribute 'format' must be a string");
}

TEST_CASE("io error: unsupported format_version") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::write_attr(f, "format_version", int64_t{2}, "t", "/"); });
  CHECK(b.open_error() == b.path + ": unsupported format_version 2 (this tq reads version 1)");
}

TEST_CASE("io error: missing format_version") {
  Broken b;
  edit(b.path, [](hid_t f) { REQUIRE(H5Adelete(f, "format_version") >= 0); });
  CHECK(b.open_error() == b.path + ": missing root attribute 'format_version'");
}

TEST_CASE("io error: missing k") {
  Broken b;
  edit(b.path, [](hid_t f) { REQUIRE(H5Ldelete(f, "/layers/2/k", H5P_DEFAULT) >= 0); });
  CHECK(b.open_error() == b.path + ": /layers/2/k: missing dataset");
}

TEST_CASE("io error: k/v shape mismatch") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/0/v", {2, 7, 4}); });
  CHECK(b.open_error() ==
        b.path + ": /layers/0/v: shape [2, 7, 4] does not match n_kv_heads=2, n_tokens=7, "
                 "head_dim=8");
}

TEST_CASE("io error: k with the wrong token count") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/2/k", {2, 6, 16}); });
  CHECK(b.open_error() ==
        b.path + ": /layers/2/k: shape [2, 6, 16] does not match n_kv_heads=2, n_tokens=7, "
                 "head_dim=16");
}

TEST_CASE("io error: k of rank 2") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/0/k", {2, 56}); });
  CHECK(contains(b.open_error(), b.path + ": /layers/0/k: shape [2, 56] has rank 2"));
}

TEST_CASE("io error: q with the wrong head count") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/0/q", {2, 7, 8}); });
  CHECK(b.open_error() ==
        b.path + ": /layers/0/q: shape [2, 7, 8] does not match n_heads=4, n_tokens=7, head_dim=8");
}

TEST_CASE("io error: uint16 data without the bfloat16 tag") {
  Broken b(DType::BF16);
  edit(b.path, [](hid_t f) {
    h5::Dataset ds = h5::open_dataset(f, "/layers/0/grad2_v", "t", "/layers/0/grad2_v");
    REQUIRE(H5Adelete(ds.get(), "dtype") >= 0);
  });
  CHECK(b.open_error() == b.path +
                              ": /layers/0/grad2_v: uint16 dataset without attribute "
                              "dtype=\"bfloat16\" (bfloat16 data must be tagged)");
}

TEST_CASE("io error: uint16 data with an unknown dtype tag") {
  Broken b(DType::BF16);
  edit(b.path, [](hid_t f) {
    h5::Dataset ds = h5::open_dataset(f, "/layers/0/k", "t", "/layers/0/k");
    h5::write_attr(ds.get(), "dtype", std::string("float8_e4m3"), "t", "x");
  });
  CHECK(contains(b.open_error(),
                 b.path + ": /layers/0/k: uint16 dataset with dtype=\"float8_e4m3\""));
}

TEST_CASE("io error: integer tensor data") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/0/k", {2, 7, 8}, H5T_STD_I32LE); });
  CHECK(contains(b.open_error(), b.path + ": /layers/0/k: unsupported dtype (4 bytes"));
}

TEST_CASE("io error: NaN value names head and token") {
  Broken b;
  edit(b.path, [](hid_t f) {
    h5::Dataset ds = h5::open_dataset(f, "/layers/0/k", "t", "/layers/0/k");
    const float nan = std::numeric_limits<float>::quiet_NaN();
    h5::write_slab(ds.get(), H5T_NATIVE_FLOAT, {1, 3, 2}, {1, 1, 1}, &nan, "t", "x");
  });
  const DumpReader r(b.path);  // values are checked on read, not at open
  std::string msg = error_of([&] { (void)r.read(0, "k"); });
  CHECK(msg == b.path + ": /layers/0/k: non-finite value nan at head 1, token 3, dim 2");
  msg = error_of([&] { (void)r.read_head(0, "k", 1); });
  CHECK(msg == b.path + ": /layers/0/k: non-finite value nan at head 1, token 3, dim 2");
  CHECK(r.read_head(0, "k", 0).size() == 7 * 8);  // the clean head still reads
}

TEST_CASE("io error: Inf value in fp16 data names head and token") {
  Broken b(DType::F16);
  edit(b.path, [](hid_t f) {
    h5::Dataset ds = h5::open_dataset(f, "/layers/2/v", "t", "/layers/2/v");
    const h5::Datatype half = h5::make_fp16_type();
    const uint16_t neg_inf = 0xFC00;
    h5::write_slab(ds.get(), half.get(), {0, 6, 15}, {1, 1, 1}, &neg_inf, "t", "x");
  });
  const DumpReader r(b.path);
  CHECK(error_of([&] { (void)r.read(2, "v"); }) ==
        b.path + ": /layers/2/v: non-finite value -inf at head 0, token 6, dim 15");
}

TEST_CASE("io error: Inf value in bf16 data") {
  Broken b(DType::BF16);
  edit(b.path, [](hid_t f) {
    h5::Dataset ds = h5::open_dataset(f, "/layers/0/q", "t", "/layers/0/q");
    const uint16_t inf = 0x7F80;
    h5::write_slab(ds.get(), H5T_NATIVE_UINT16, {3, 0, 0}, {1, 1, 1}, &inf, "t", "x");
  });
  const DumpReader r(b.path);
  CHECK(error_of([&] { (void)r.read_head(0, "q", 3); }) ==
        b.path + ": /layers/0/q: non-finite value inf at head 3, token 0, dim 0");
}

TEST_CASE("io error: empty layer (0 tokens in a dataset)") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/layers/0/k", {2, 0, 8}); });
  CHECK(b.open_error() == b.path + ": /layers/0/k: empty dataset (shape [2, 0, 8])");
}

TEST_CASE("io error: empty dump (n_tokens = 0)") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::write_attr(f, "n_tokens", int64_t{0}, "t", "/"); });
  CHECK(b.open_error() == b.path + ": empty dump: n_tokens = 0");
}

TEST_CASE("io error: n_heads not a multiple of n_kv_heads") {
  Broken b;
  edit(b.path, [](hid_t f) {
    h5::Group g = h5::open_group(f, "/layers/0", "t", "x");
    h5::write_attr(g.get(), "n_heads", int64_t{3}, "t", "x");
  });
  CHECK(b.open_error() == b.path + ": /layers/0: n_heads=3 is not a multiple of n_kv_heads=2");
}

TEST_CASE("io error: missing layer attribute") {
  Broken b;
  edit(b.path, [](hid_t f) {
    h5::Group g = h5::open_group(f, "/layers/2", "t", "x");
    REQUIRE(H5Adelete(g.get(), "head_dim") >= 0);
  });
  CHECK(b.open_error() == b.path + ": /layers/2: missing attribute 'head_dim'");
}

TEST_CASE("io error: bad rope_pairing") {
  Broken b;
  edit(b.path, [](hid_t f) {
    h5::Group g = h5::open_group(f, "/layers/2", "t", "x");
    h5::write_attr(g.get(), "rope_pairing", std::string("neox"), "t", "x");
  });
  CHECK(contains(b.open_error(), b.path + ": /layers/2: rope_pairing=\"neox\""));
}

TEST_CASE("io error: missing token ids") {
  Broken b;
  edit(b.path, [](hid_t f) { REQUIRE(H5Ldelete(f, "/tokens/ids", H5P_DEFAULT) >= 0); });
  CHECK(b.open_error() == b.path + ": /tokens/ids: missing dataset");
}

TEST_CASE("io error: token positions of the wrong length") {
  Broken b;
  edit(b.path, [](hid_t f) { replace_dataset(f, "/tokens/positions", {6}, H5T_STD_I32LE); });
  CHECK(b.open_error() == b.path + ": /tokens/positions: shape [6] does not match n_tokens=7");
}

TEST_CASE("io error: non-numeric layer group") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::create_group(f, "/layers/extra", "t", "x"); });
  CHECK(contains(b.open_error(), b.path + ": /layers/extra: layer group names must be"));
}

TEST_CASE("io error: no layers") {
  Broken b;
  edit(b.path, [](hid_t f) {
    REQUIRE(H5Ldelete(f, "/layers/0", H5P_DEFAULT) >= 0);
    REQUIRE(H5Ldelete(f, "/layers/2", H5P_DEFAULT) >= 0);
  });
  CHECK(b.open_error() == b.path + ": /layers: no layers in the dump");
}

TEST_CASE("io error: n_layers smaller than a present layer") {
  Broken b;
  edit(b.path, [](hid_t f) { h5::write_attr(f, "n_layers", int64_t{2}, "t", "/"); });
  CHECK(b.open_error() == b.path + ": n_layers=2 but /layers/2 exists");
}
