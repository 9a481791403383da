// DumpWriter failure modes (atomicity, validation) and the HDF5 wrapper's helpers.
#include <doctest/doctest.h>

#include <cstring>
#include <fstream>
#include <limits>

#include "test_io_util.h"

using namespace tq;
using namespace tq::test;

TEST_CASE("io writer: destroying an unclosed writer leaves no file behind") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  const RefDump ref;
  {
    DumpWriter w(path, ref.meta, DType::F16);
    w.write_layer(ref.l0, RefDump::ptrs(ref.t0));
    CHECK(dir.entries() == 1);  // the temporary file
    CHECK(!fs::exists(path));
  }
  CHECK(dir.entries() == 0);
}

TEST_CASE("io writer: an exception mid-write leaves no file behind") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  const RefDump ref;
  try {
    DumpWriter w(path, ref.meta);
    w.write_layer(ref.l0, RefDump::ptrs(ref.t0));
    LayerInfo bad = ref.l2;
    bad.head_dim = 8;  // tensors are [2, 7, 16]
    w.write_layer(bad, RefDump::ptrs(ref.t2));
    FAIL("write_layer accepted a wrong shape");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) ==
          path + ": /layers/2/k: shape [2, 7, 16] (224 values) does not match n_kv_heads=2, "
                 "n_tokens=7, head_dim=8");
  }
  CHECK(dir.entries() == 0);
}

TEST_CASE("io writer: an existing file is replaced only by close()") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  std::ofstream(path) << "old contents";
  const RefDump ref;
  {
    DumpWriter w(path, ref.meta);
    w.write_layer(ref.l0, RefDump::ptrs(ref.t0));
    w.write_layer(ref.l2, RefDump::ptrs(ref.t2));
    CHECK(fs::file_size(path) == 12);  // untouched until close
    w.close();
  }
  CHECK(DumpReader(path).info().layers.size() == 2);
  CHECK(dir.entries() == 1);
}

TEST_CASE("io writer: close without layers fails and leaves nothing") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  DumpWriter w(path, RefDump().meta);
  CHECK(error_of([&] { w.close(); }) == path + ": no layers written");
  CHECK(dir.entries() == 0);
}

TEST_CASE("io writer: unwritable directory is an error naming the path") {
  TempDir dir;
  const std::string path = dir.file("missing-dir/out.h5");
  const std::string msg = error_of([&] { DumpWriter w(path, RefDump().meta); });
  CHECK(contains(msg, path + ": cannot create"));
}

TEST_CASE("io writer: validates metadata and layers") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  const RefDump ref;
  DumpMeta empty = ref.meta;
  empty.token_ids.clear();
  CHECK(error_of([&] { DumpWriter w(path, empty); }) ==
        path + ": cannot write a dump with 0 tokens");
  DumpMeta bad_pos = ref.meta;
  bad_pos.positions.pop_back();
  CHECK(error_of([&] { DumpWriter w(path, bad_pos); }) == path + ": 6 positions for 7 tokens");

  DumpWriter w(path, ref.meta);
  LayerInfo gqa = ref.l0;
  gqa.n_kv_heads = 3;
  CHECK(error_of([&] { w.write_layer(gqa, RefDump::ptrs(ref.t0)); }) ==
        path + ": /layers/0: n_heads=4 is not a multiple of n_kv_heads=3");
  LayerInfo far = ref.l2;
  far.index = 3;
  CHECK(contains(error_of([&] { w.write_layer(far, RefDump::ptrs(ref.t2)); }),
                 "/layers/3: layer index 3 outside [0, n_layers=3)"));
  auto no_v = RefDump::ptrs(ref.t2);
  no_v.erase("v");
  CHECK(error_of([&] { w.write_layer(ref.l2, no_v); }) ==
        path + ": /layers/2/v: missing required tensor");
  auto extra = RefDump::ptrs(ref.t2);
  extra["attn_out"] = &ref.t2.at("k");
  CHECK(error_of([&] { w.write_layer(ref.l2, extra); }) ==
        path + ": /layers/2/attn_out: unknown dataset name");
  w.write_layer(ref.l2, RefDump::ptrs(ref.t2));
  CHECK(error_of([&] { w.write_layer(ref.l2, RefDump::ptrs(ref.t2)); }) ==
        path + ": /layers/2: layer written twice");
}

TEST_CASE("io writer: refuses values the dtype cannot hold") {
  TempDir dir;
  const std::string path = dir.file("out.h5");
  const RefDump ref;
  Tensor3 k = ref.t2.at("k");
  k.at(1)[3 * 16 + 5] = 70000.0f;  // head 1, token 3, dim 5: beyond fp16 max
  {
    DumpWriter w(path, ref.meta, DType::F16);
    CHECK(error_of([&] { w.write_layer(ref.l2, {{"k", &k}, {"v", &ref.t2.at("v")}}); }) ==
          path + ": /layers/2/k: value 70000 at head 1, token 3, dim 5 is not representable as "
                 "finite float16");
  }
  {
    DumpWriter w(path, ref.meta, DType::F32);  // fine as fp32
    w.write_layer(ref.l2, {{"k", &k}, {"v", &ref.t2.at("v")}});
    k.data[0] = std::numeric_limits<float>::infinity();
    CHECK(contains(error_of([&] { w.write_layer(ref.l0, {{"k", &k}, {"v", &k}}); }),
                   "/layers/0/k: shape"));  // shape is checked before values
    Tensor3 k0 = ref.t0.at("k");
    k0.data[9] = std::numeric_limits<float>::quiet_NaN();
    CHECK(error_of([&] { w.write_layer(ref.l0, {{"k", &k0}, {"v", &ref.t0.at("v")}}); }) ==
          path + ": /layers/0/k: value nan at head 0, token 1, dim 1 is not representable as "
                 "finite float32");
  }
  CHECK(dir.entries() == 0);
}

TEST_CASE("hdf5 wrapper: attributes of every kind, members, exists") {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  {
    h5::File f = h5::create_file(path);
    h5::write_attr(f.get(), "s", std::string("hello"), path, "/");
    h5::write_attr(f.get(), "i", int64_t{-42}, path, "/");
    h5::write_attr(f.get(), "x", 0.1, path, "/");
    // A fixed-length, space-padded string (as numpy bytes / other tools may write).
    h5::Datatype fixed(H5Tcopy(H5T_C_S1));
    H5Tset_size(fixed.get(), 8);
    H5Tset_strpad(fixed.get(), H5T_STR_SPACEPAD);
    h5::Dataspace scalar(H5Screate(H5S_SCALAR));
    h5::Attribute a(
        H5Acreate2(f.get(), "fixed", fixed.get(), scalar.get(), H5P_DEFAULT, H5P_DEFAULT));
    REQUIRE(H5Awrite(a.get(), fixed.get(), "ab      ") >= 0);
    // A 3-element int array attribute.
    const hsize_t three = 3;
    h5::Dataspace arr(H5Screate_simple(1, &three, nullptr));
    h5::Attribute b(H5Acreate2(f.get(), "arr", H5T_STD_I32LE, arr.get(), H5P_DEFAULT, H5P_DEFAULT));
    const int32_t vals[3] = {1, 2, 3};
    REQUIRE(H5Awrite(b.get(), H5T_NATIVE_INT32, vals) >= 0);
    h5::create_group(f.get(), "g", path, "/g");
    h5::create_group(f.get(), "g/sub", path, "/g/sub");
  }
  h5::File f = h5::open_file(path);
  const hid_t r = f.get();
  CHECK(h5::attr_string(r, "s", path, "/") == "hello");
  CHECK(h5::attr_int(r, "i", path, "/") == -42);
  CHECK(h5::attr_double(r, "x", path, "/") == 0.1);
  CHECK(h5::attr_double(r, "i", path, "/") == -42.0);  // integers are numbers too
  CHECK(h5::attr_string(r, "fixed", path, "/") == "ab");
  CHECK(!h5::attr_string(r, "absent", path, "/"));
  CHECK(h5::attr_text(r, "x", path, "/") == "0.1");
  CHECK(h5::attr_text(r, "arr", path, "/") == "[1, 2, 3]");
  CHECK(error_of([&] { (void)h5::attr_int(r, "x", path, "/"); }) ==
        path + ": /: attribute 'x' must be an integer");
  CHECK(error_of([&] { (void)h5::attr_int(r, "arr", path, "/"); }) ==
        path + ": /: attribute 'arr' must hold one value, not 3");
  CHECK(h5::attr_names(r, path, "/") == std::vector<std::string>{"arr", "fixed", "i", "s", "x"});
  CHECK(h5::members(r, path, "/") == std::vector<std::string>{"g"});
  CHECK(h5::exists(r, "/g/sub"));
  CHECK(h5::exists(r, "g"));
  CHECK(!h5::exists(r, "/nope/sub"));  // missing parent: false, not an error
  CHECK(h5::object_kind(r, "/g") == H5I_GROUP);
  CHECK(error_of([&] { h5::open_dataset(r, "/g/none", path, "/g/none"); }).rfind(
            path + ": /g/none: cannot open dataset", 0) == 0);
}

TEST_CASE("hdf5 wrapper: the fp16 type has binary16's layout and round-trips bits") {
  const h5::Datatype half = h5::make_fp16_type();
  CHECK(H5Tget_class(half.get()) == H5T_FLOAT);
  CHECK(H5Tget_size(half.get()) == 2);
  CHECK(h5::is_fp16_layout(half.get()));
  CHECK(!h5::is_bf16_layout(half.get()));
  CHECK(!h5::is_fp16_layout(H5T_IEEE_F32LE));
  // HDF5's own float16 -> float32 conversion agrees with tq::fp16_to_float on sample words,
  // an independent check that the type means what its fields say.
  const uint16_t words[6] = {0x3C00, 0xC000, 0x7BFF, 0x0001, 0x3555, 0x8400};
  float conv[6];
  // H5Tconvert works in place: the buffer holds the 16-bit words and has room for the floats.
  std::vector<unsigned char> buf(6 * sizeof(float));
  std::memcpy(buf.data(), words, sizeof words);
  REQUIRE(H5Tconvert(half.get(), H5T_NATIVE_FLOAT, 6, buf.data(), nullptr, H5P_DEFAULT) >= 0);
  std::memcpy(conv, buf.data(), sizeof conv);
  for (int i = 0; i < 6; ++i) CHECK(conv[i] == fp16_to_float(words[i]));
}
