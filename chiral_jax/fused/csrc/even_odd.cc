// Fused CPU kernels (float32) for activations held in the even/odd basis: the basis
// changes and the odd activation.
//
// Basis changes (canonical layouts: joints [left, right, centre], each joint's dims
// [negated, positive], s = -1 on negated dims). Split: x -> plus = [u, c_p],
// minus = [v, c_n] with u = b (x_L + s x_R), v = b (x_L - s x_R); merge: the inverse
// shape, x_L = a (u + v), x_R = a s (u - v), centre channels copied back. b = 1 is
// to_eigen and a = 1/2 from_eigen; each is the other's transpose with the same scale.
// XLA emits either as several kernels plus a concatenation; here it is one pass.
//
// The odd activation:
// plus [..., n+] = [u (pairs), c_p], minus [..., n-] = [v (pairs), c_n]. For each pair
// channel p = (u + v) / 2 and q = (u - v) / 2 are the joint-basis values up to sign, and
// an odd f gives u' = f(p) + f(q), v' = f(p) - f(q); centre channels map as they are.
// One pass reads u, v and writes u', v' (f evaluated once per joint-basis value), where
// XLA's elementwise fusions evaluate f twice or materialise f(p), f(q) in between.
//
// The backward pass needs only the outputs: f(p) = (u' + v') / 2, f(q) = (u' - v') / 2,
// and f' is a function of f for each kind here (tanh: 1 - y^2; softsign: (1 - |y|)^2;
// hardtanh: |y| < 1).
//
// Both handlers split rows over XLA's intra-op thread pool. The calling thread works
// too and waits only for chunks another thread has started, so a busy pool cannot
// deadlock it.

#include <algorithm>
#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

enum Kind : int32_t { kTanh = 0, kSoftsign = 1, kHardtanh = 2 };

// Eigen's float tanh (the rational approximation XLA's CPU backend also uses), written
// branch-free so that the loops below vectorise.
inline float Tanh(float x) {
  const float c = 7.90531110763549805f;
  x = std::min(std::max(x, -c), c);
  const float x2 = x * x;
  float p = -2.76076847742355e-16f;
  p = p * x2 + 2.00018790482477e-13f;
  p = p * x2 + -8.60467152213735e-11f;
  p = p * x2 + 5.12229709037114e-08f;
  p = p * x2 + 1.48572235717979e-05f;
  p = p * x2 + 6.37261928875436e-04f;
  p = p * x2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * x2 + 1.18534705686654e-04f;
  q = q * x2 + 2.26843463243900e-03f;
  q = q * x2 + 4.89352518554385e-03f;
  return x * p / q;
}

template <Kind K>
inline float F(float x) {
  if constexpr (K == kTanh) return Tanh(x);
  if constexpr (K == kSoftsign) return x / (1.0f + std::fabs(x));
  if constexpr (K == kHardtanh) return std::min(std::max(x, -1.0f), 1.0f);
}

// f'(x) written in terms of y = f(x).
template <Kind K>
inline float Slope(float y) {
  if constexpr (K == kTanh) return 1.0f - y * y;
  if constexpr (K == kSoftsign) {
    const float r = 1.0f - std::fabs(y);
    return r * r;
  }
  if constexpr (K == kHardtanh) return std::fabs(y) < 1.0f ? 1.0f : 0.0f;
}

struct Shape {
  int64_t rows, n_plus, n_minus, pairs;
};

template <Kind K>
void ForwardRows(const float* plus, const float* minus, float* plus_out, float* minus_out,
                 const Shape& s, int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* u = plus + r * s.n_plus;
    const float* v = minus + r * s.n_minus;
    float* u_out = plus_out + r * s.n_plus;
    float* v_out = minus_out + r * s.n_minus;
#pragma GCC ivdep
    for (int64_t j = 0; j < s.pairs; ++j) {
      const float fp = F<K>((u[j] + v[j]) * 0.5f), fq = F<K>((u[j] - v[j]) * 0.5f);
      u_out[j] = fp + fq;
      v_out[j] = fp - fq;
    }
#pragma GCC ivdep
    for (int64_t j = s.pairs; j < s.n_plus; ++j) u_out[j] = F<K>(u[j]);
#pragma GCC ivdep
    for (int64_t j = s.pairs; j < s.n_minus; ++j) v_out[j] = F<K>(v[j]);
  }
}

template <Kind K>
void BackwardRows(const float* plus_out, const float* minus_out, const float* g_plus,
                  const float* g_minus, float* d_plus, float* d_minus, const Shape& s,
                  int64_t begin, int64_t end) {
  for (int64_t r = begin; r < end; ++r) {
    const float* u = plus_out + r * s.n_plus;
    const float* v = minus_out + r * s.n_minus;
    const float* gu = g_plus + r * s.n_plus;
    const float* gv = g_minus + r * s.n_minus;
    float* du = d_plus + r * s.n_plus;
    float* dv = d_minus + r * s.n_minus;
#pragma GCC ivdep
    for (int64_t j = 0; j < s.pairs; ++j) {
      const float fp = (u[j] + v[j]) * 0.5f, fq = (u[j] - v[j]) * 0.5f;
      const float ep = (gu[j] + gv[j]) * Slope<K>(fp), eq = (gu[j] - gv[j]) * Slope<K>(fq);
      du[j] = (ep + eq) * 0.5f;
      dv[j] = (ep - eq) * 0.5f;
    }
#pragma GCC ivdep
    for (int64_t j = s.pairs; j < s.n_plus; ++j) du[j] = gu[j] * Slope<K>(u[j]);
#pragma GCC ivdep
    for (int64_t j = s.pairs; j < s.n_minus; ++j) dv[j] = gv[j] * Slope<K>(v[j]);
  }
}

// Runs body(begin, end) over [0, rows) in chunks, on the caller and the pool's threads.
template <typename Body>
void ParallelRows(ffi::ThreadPool& pool, int64_t rows, int64_t row_size, Body body) {
  constexpr int64_t kMinChunkElements = 1 << 16;
  const int64_t threads = std::max<int64_t>(1, pool.num_threads());
  const int64_t chunks = std::clamp<int64_t>(rows * row_size / kMinChunkElements, 1, 4 * threads);
  if (chunks == 1 || threads == 1) {
    body(0, rows);
    return;
  }
  struct State {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mutex;
    std::condition_variable all_done;
  };
  auto state = std::make_shared<State>();
  const int64_t per_chunk = (rows + chunks - 1) / chunks;
  auto work = [state, body, rows, chunks, per_chunk]() {
    for (int64_t c; (c = state->next.fetch_add(1)) < chunks;) {
      body(c * per_chunk, std::min(rows, (c + 1) * per_chunk));
      if (state->done.fetch_add(1) + 1 == chunks) {
        std::lock_guard<std::mutex> lock(state->mutex);
        state->all_done.notify_all();
      }
    }
  };
  for (int64_t t = 1; t < threads; ++t) pool.Schedule(decltype(work)(work));
  work();
  std::unique_lock<std::mutex> lock(state->mutex);
  state->all_done.wait(lock, [&] { return state->done.load() == chunks; });
}

ffi::Error CheckShape(ffi::AnyBuffer::Dimensions plus, ffi::AnyBuffer::Dimensions minus,
                      int64_t pairs, Shape* shape) {
  if (plus.size() == 0 || plus.size() != minus.size() ||
      !std::equal(plus.begin(), plus.end() - 1, minus.begin())) {
    return ffi::Error::InvalidArgument("plus and minus need the same leading dimensions");
  }
  shape->n_plus = plus.back();
  shape->n_minus = minus.back();
  if (pairs < 0 || pairs > shape->n_plus || pairs > shape->n_minus) {
    return ffi::Error::InvalidArgument("pairs exceeds a channel count");
  }
  shape->pairs = pairs;
  shape->rows = 1;
  for (auto it = plus.begin(); it != plus.end() - 1; ++it) shape->rows *= *it;
  return ffi::Error::Success();
}

template <Kind K>
void Forward(ffi::ThreadPool& pool, const float* plus, const float* minus, float* plus_out,
             float* minus_out, const Shape& s) {
  ParallelRows(pool, s.rows, s.n_plus + s.n_minus, [=](int64_t begin, int64_t end) {
    ForwardRows<K>(plus, minus, plus_out, minus_out, s, begin, end);
  });
}

template <Kind K>
void Backward(ffi::ThreadPool& pool, const float* plus_out, const float* minus_out,
              const float* g_plus, const float* g_minus, float* d_plus, float* d_minus,
              const Shape& s) {
  ParallelRows(pool, s.rows, s.n_plus + s.n_minus, [=](int64_t begin, int64_t end) {
    BackwardRows<K>(plus_out, minus_out, g_plus, g_minus, d_plus, d_minus, s, begin, end);
  });
}

ffi::Error OddMapForward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> plus,
                         ffi::Buffer<ffi::F32> minus, ffi::ResultBuffer<ffi::F32> plus_out,
                         ffi::ResultBuffer<ffi::F32> minus_out, int64_t pairs, int32_t kind) {
  Shape s;
  if (ffi::Error e = CheckShape(plus.dimensions(), minus.dimensions(), pairs, &s); e.failure()) {
    return e;
  }
  const float *u = plus.typed_data(), *v = minus.typed_data();
  float *u_out = plus_out->typed_data(), *v_out = minus_out->typed_data();
  switch (kind) {
    case kTanh: Forward<kTanh>(pool, u, v, u_out, v_out, s); break;
    case kSoftsign: Forward<kSoftsign>(pool, u, v, u_out, v_out, s); break;
    case kHardtanh: Forward<kHardtanh>(pool, u, v, u_out, v_out, s); break;
    default: return ffi::Error::InvalidArgument("unknown activation kind");
  }
  return ffi::Error::Success();
}

ffi::Error OddMapBackward(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> plus_out,
                          ffi::Buffer<ffi::F32> minus_out, ffi::Buffer<ffi::F32> g_plus,
                          ffi::Buffer<ffi::F32> g_minus, ffi::ResultBuffer<ffi::F32> d_plus,
                          ffi::ResultBuffer<ffi::F32> d_minus, int64_t pairs, int32_t kind) {
  Shape s;
  if (ffi::Error e = CheckShape(plus_out.dimensions(), minus_out.dimensions(), pairs, &s);
      e.failure()) {
    return e;
  }
  const float *u = plus_out.typed_data(), *v = minus_out.typed_data();
  const float *gu = g_plus.typed_data(), *gv = g_minus.typed_data();
  float *du = d_plus->typed_data(), *dv = d_minus->typed_data();
  switch (kind) {
    case kTanh: Backward<kTanh>(pool, u, v, gu, gv, du, dv, s); break;
    case kSoftsign: Backward<kSoftsign>(pool, u, v, gu, gv, du, dv, s); break;
    case kHardtanh: Backward<kHardtanh>(pool, u, v, gu, gv, du, dv, s); break;
    default: return ffi::Error::InvalidArgument("unknown activation kind");
  }
  return ffi::Error::Success();
}

struct Basis {
  int64_t rows, left, centre, dims, negated;
  float scale;
  int64_t pairs() const { return left * dims; }
  int64_t size() const { return (2 * left + centre) * dims; }
  int64_t n_plus() const { return pairs() + centre * (dims - negated); }
  int64_t n_minus() const { return pairs() + centre * negated; }
};

void SplitRows(const float* x, float* plus, float* minus, const Basis& b, int64_t begin,
               int64_t end) {
  const int64_t d = b.dims, n = b.negated, pairs = b.pairs();
  for (int64_t r = begin; r < end; ++r) {
    const float* xr = x + r * b.size();
    float* u = plus + r * b.n_plus();
    float* v = minus + r * b.n_minus();
    for (int64_t i = 0; i < b.left; ++i) {
      const float* xl = xr + i * d;
      const float* xrt = xr + pairs + i * d;
      float* ui = u + i * d;
      float* vi = v + i * d;
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) {
        ui[k] = b.scale * (xl[k] - xrt[k]);
        vi[k] = b.scale * (xl[k] + xrt[k]);
      }
#pragma GCC ivdep
      for (int64_t k = n; k < d; ++k) {
        ui[k] = b.scale * (xl[k] + xrt[k]);
        vi[k] = b.scale * (xl[k] - xrt[k]);
      }
    }
    for (int64_t c = 0; c < b.centre; ++c) {
      const float* xc = xr + 2 * pairs + c * d;
      std::copy(xc, xc + n, v + pairs + c * n);
      std::copy(xc + n, xc + d, u + pairs + c * (d - n));
    }
  }
}

void MergeRows(const float* plus, const float* minus, float* x, const Basis& b, int64_t begin,
               int64_t end) {
  const int64_t d = b.dims, n = b.negated, pairs = b.pairs();
  for (int64_t r = begin; r < end; ++r) {
    float* xr = x + r * b.size();
    const float* u = plus + r * b.n_plus();
    const float* v = minus + r * b.n_minus();
    for (int64_t i = 0; i < b.left; ++i) {
      float* xl = xr + i * d;
      float* xrt = xr + pairs + i * d;
      const float* ui = u + i * d;
      const float* vi = v + i * d;
#pragma GCC ivdep
      for (int64_t k = 0; k < n; ++k) {
        xl[k] = b.scale * (ui[k] + vi[k]);
        xrt[k] = b.scale * (vi[k] - ui[k]);
      }
#pragma GCC ivdep
      for (int64_t k = n; k < d; ++k) {
        xl[k] = b.scale * (ui[k] + vi[k]);
        xrt[k] = b.scale * (ui[k] - vi[k]);
      }
    }
    for (int64_t c = 0; c < b.centre; ++c) {
      float* xc = xr + 2 * pairs + c * d;
      std::copy(v + pairs + c * n, v + pairs + (c + 1) * n, xc);
      std::copy(u + pairs + c * (d - n), u + pairs + (c + 1) * (d - n), xc + n);
    }
  }
}

ffi::Error MakeBasis(ffi::AnyBuffer::Dimensions joint, int64_t left, int64_t centre, int64_t dims,
                     int64_t negated, float scale, Basis* b) {
  if (joint.size() == 0 || left < 0 || centre < 0 || negated < 0 || negated > dims ||
      joint.back() != (2 * left + centre) * dims) {
    return ffi::Error::InvalidArgument("joint-basis array does not match the layout");
  }
  *b = Basis{1, left, centre, dims, negated, scale};
  for (auto it = joint.begin(); it != joint.end() - 1; ++it) b->rows *= *it;
  return ffi::Error::Success();
}

ffi::Error Split(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::ResultBuffer<ffi::F32> plus,
                 ffi::ResultBuffer<ffi::F32> minus, int64_t left, int64_t centre, int64_t dims,
                 int64_t negated, float scale) {
  Basis b;
  if (ffi::Error e = MakeBasis(x.dimensions(), left, centre, dims, negated, scale, &b);
      e.failure()) {
    return e;
  }
  const float* in = x.typed_data();
  float *u = plus->typed_data(), *v = minus->typed_data();
  ParallelRows(pool, b.rows, b.size(), [=](int64_t begin, int64_t end) {
    SplitRows(in, u, v, b, begin, end);
  });
  return ffi::Error::Success();
}

ffi::Error Merge(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> plus, ffi::Buffer<ffi::F32> minus,
                 ffi::ResultBuffer<ffi::F32> x, int64_t left, int64_t centre, int64_t dims,
                 int64_t negated, float scale) {
  Basis b;
  if (ffi::Error e = MakeBasis(x->dimensions(), left, centre, dims, negated, scale, &b);
      e.failure()) {
    return e;
  }
  if (static_cast<int64_t>(plus.element_count()) != b.rows * b.n_plus() ||
      static_cast<int64_t>(minus.element_count()) != b.rows * b.n_minus()) {
    return ffi::Error::InvalidArgument("plus and minus do not match the layout");
  }
  const float *u = plus.typed_data(), *v = minus.typed_data();
  float* out = x->typed_data();
  ParallelRows(pool, b.rows, b.size(), [=](int64_t begin, int64_t end) {
    MergeRows(u, v, out, b, begin, end);
  });
  return ffi::Error::Success();
}

}  // namespace

using F32Buffer = ffi::Buffer<ffi::F32>;

#define CHIRAL_ODD_MAP_ATTRS .Attr<int64_t>("pairs").Attr<int32_t>("kind")
#define CHIRAL_BASIS_ATTRS \
  .Attr<int64_t>("left").Attr<int64_t>("centre").Attr<int64_t>("dims").Attr<int64_t>("negated") \
      .Attr<float>("scale")

XLA_FFI_DEFINE_HANDLER_SYMBOL(ChiralOddMapForward, OddMapForward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>() CHIRAL_ODD_MAP_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ChiralOddMapBackward, OddMapBackward,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>() CHIRAL_ODD_MAP_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ChiralSplit, Split,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Buffer>()
                                  .Ret<F32Buffer>()
                                  .Ret<F32Buffer>() CHIRAL_BASIS_ATTRS);

XLA_FFI_DEFINE_HANDLER_SYMBOL(ChiralMerge, Merge,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<F32Buffer>()
                                  .Arg<F32Buffer>()
                                  .Ret<F32Buffer>() CHIRAL_BASIS_ATTRS);
