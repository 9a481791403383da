#pragma once
// The metrics library in one include. Metrics never know which codec produced a reconstruction:
// every function takes original and reconstructed arrays.
//   reconstruction.h  ReconStats: MSE / NMSE (pooled, per-head mean, centred), max error,
//                     relative-error percentiles, cosine; one head at a time, merge() to pool.
//   inner_product.h   IpStats: ip_bias, ip_rms over causal (q, k) pairs; GQA mapping;
//                     seeded random queries for dumps without Q.
//   attention.h       AttnStats: attn_kl (+ by position, sink-excluded), top-1/top-k agreement,
//                     output error, attention-weighted value error.
//   pareto.h          noise-aware Pareto front; circular block bootstrap of ratio statistics.
// Reproducibility contract: every function is single-threaded with a fixed reduction order.
// Callers parallelise over heads, store per-head stats by index and merge them in (layer, head)
// order; the pooled results are then byte-identical at any thread count.
#include "tq/metrics/attention.h"
#include "tq/metrics/inner_product.h"
#include "tq/metrics/pareto.h"
#include "tq/metrics/reconstruction.h"
