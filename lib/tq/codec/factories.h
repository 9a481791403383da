#pragma once
// Factory functions of the built-in codecs. A new codec is one .cpp in lib/tq/codec/ defining its
// factory, one declaration here and one row in the registry table of spec.cpp.
//
// Stages (rotations, centering, sink tokens) wrap an inner codec; see spec.cpp for the grammar.
#include <memory>

#include "tq/codec/codec.h"

namespace tq {

// TurboQuant-MSE family (tq_mse.cpp, eden.cpp)
std::unique_ptr<Codec> make_tq_mse(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_eden(const CodecArgs& args, const CodecContext& ctx);
// 1-bit sketches (qjl.cpp, tq_prod.cpp, sign_sketch.h): "qjl", "tq-prod:B"; channel split (outlier.cpp)
std::unique_ptr<Codec> make_qjl(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_tq_prod(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_outlier(const CodecArgs& args, const CodecContext& ctx);
// Uncompressed references (identity.cpp): "fp32", "fp16"
std::unique_ptr<Codec> make_fp32(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_fp16(const CodecArgs& args, const CodecContext& ctx);

// Baselines (kivi.cpp, block_formats.cpp): "kivi:B" (KIVI asymmetric per-channel K / per-token V
// quantization), llama.cpp block formats "q8_0", "q4_0", "q4_1", "iq4_nl". See docs/baselines.md.
std::unique_ptr<Codec> make_kivi(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_q8_0(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_q4_0(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_q4_1(const CodecArgs& args, const CodecContext& ctx);
std::unique_ptr<Codec> make_iq4_nl(const CodecArgs& args, const CodecContext& ctx);
// Full-precision token stages (stage_sinks.cpp), applicable to every codec: keep the first
// n_sinks rows / the last n_recent rows at fp16 (fp32 when `fp32`), counted as window bytes, and
// code the other rows with `inner`. n == 0 returns `inner` unchanged; n < 0 is a UsageError.
std::unique_ptr<Codec> wrap_with_sinks(std::unique_ptr<Codec> inner, int n_sinks, bool fp32);
std::unique_ptr<Codec> wrap_with_window(std::unique_ptr<Codec> inner, int n_recent, bool fp32);

// Stage factories. `stage` carries the stage's name, its optional ":N" parameter in `bits`
// (-1 when absent), the full spec and the spec's key=value options (a stage may consume some).
// Rotation stages "haar", "hr", "id" (stage_rotation.cpp); "center" (stage_center.cpp).
std::unique_ptr<Codec> make_rotation_stage(const CodecArgs& stage, std::unique_ptr<Codec> inner, const CodecContext& ctx);
std::unique_ptr<Codec> make_center_stage(const CodecArgs& stage, std::unique_ptr<Codec> inner, const CodecContext& ctx);

}  // namespace tq
