// Compiled autograd nodes of the reference's training path (reference/native.py builds and loads
// this file). Each node is the C++ twin of a Python torch.autograd.Function: the same ATen calls
// in the same order, forward and backward, so the results carry the same bits (tests compare
// them); what goes away is the Python interpreter's share of every call.
//
//   feature_hash  <->  reference/hashing.py  _FeatureHash
//   normalise     <->  reference/hashing.py  _Normalise
//   project_out   <->  reference/bases.py    _ProjectOut
//   unit_block    <->  reference/scaled_grad.py  _UnitBlock (with its conv kernel choices given)
//   frozen_step   <->  reference/hrn.py  _frozen_step (inference: no autograd)
//
// and one kernel, hash_add_: the feature hash's scatter as a plain loop, with the additions that
// index_add_ makes in the order it makes them (per row, in increasing map index).

#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <optional>
#include <vector>

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;
using at::Tensor;

// out[b, buckets[j]] += flat[b, j] * signs[j], for j = 0, 1, ... in turn within each row: what
// out.index_add_(1, buckets, flat * signs) adds, in its order (the same bits; a sign is +-1, so
// each product is exact). CPU float32 only (the caller checks); rows run in parallel.
void hash_add_(Tensor& out, const Tensor& flat_in, const Tensor& buckets_in, const Tensor& signs_in) {
  TORCH_CHECK(out.device().is_cpu() && out.scalar_type() == at::kFloat && out.is_contiguous() &&
                  out.dim() == 2, "hash_add_: out must be a contiguous CPU float32 matrix");
  Tensor flat = flat_in.contiguous(), buckets = buckets_in.contiguous(),
         signs = signs_in.contiguous();
  TORCH_CHECK(flat.scalar_type() == at::kFloat && flat.dim() == 2 && flat.size(0) == out.size(0),
              "hash_add_: flat must be float32 [rows of out, n]");
  TORCH_CHECK(buckets.scalar_type() == at::kLong && signs.scalar_type() == at::kFloat &&
                  buckets.numel() == flat.size(1) && signs.numel() == flat.size(1),
              "hash_add_: buckets (int64) and signs (float32) must have one entry per column");
  const int64_t rows = flat.size(0), n = flat.size(1), s = out.size(1);
  const float* x = flat.data_ptr<float>();
  const int64_t* bucket = buckets.data_ptr<int64_t>();
  const float* sign = signs.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(0, rows, 8, [&](int64_t begin, int64_t end) {
    int64_t b = begin;
    for (; b + 4 <= end; b += 4) {   // four rows per pass share the bucket and sign loads
      float *r0 = o + b * s, *r1 = r0 + s, *r2 = r1 + s, *r3 = r2 + s;
      const float *x0 = x + b * n, *x1 = x0 + n, *x2 = x1 + n, *x3 = x2 + n;
      for (int64_t j = 0; j < n; ++j) {
        const int64_t k = bucket[j];
        const float g = sign[j];
        r0[k] += x0[j] * g;
        r1[k] += x1[j] * g;
        r2[k] += x2[j] * g;
        r3[k] += x3[j] * g;
      }
    }
    for (; b < end; ++b) {
      float* row = o + b * s;
      const float* xb = x + b * n;
      for (int64_t j = 0; j < n; ++j) row[bucket[j]] += xb[j] * sign[j];
    }
  });
}

Tensor plain_feature_hash(const Tensor& flat, const Tensor& buckets, const Tensor& signs,
                          int64_t s) {
  Tensor out = flat.new_zeros({flat.size(0), s});
  if (flat.device().is_cpu() && flat.scalar_type() == at::kFloat) {
    hash_add_(out, flat, buckets, signs);
    return out;
  }
  return out.index_add_(1, buckets, flat * signs);
}

// phi(y) of the flattened rows: bucket j of row b gathers sign_j * y[b, j].
struct FeatureHash : public torch::autograd::Function<FeatureHash> {
  static Tensor forward(AutogradContext* ctx, const Tensor& y, const Tensor& buckets,
                        const Tensor& signs, int64_t s) {
    ctx->save_for_backward({buckets, signs});
    ctx->saved_data["shape"] = y.sizes().vec();
    return plain_feature_hash(y.reshape({y.size(0), -1}), buckets, signs, s);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    auto shape = ctx->saved_data["shape"].toIntVector();
    Tensor grad_y = (grads[0].index_select(1, saved[0]) * saved[1]).view(shape);
    return {grad_y, Tensor(), Tensor(), Tensor()};
  }
};

// phi / ||phi|| per row (an all-zero row stays 0); the backward is autograd's own chain for
// division, where and the vector norm, in its order.
struct Normalise : public torch::autograd::Function<Normalise> {
  static Tensor forward(AutogradContext* ctx, const Tensor& phi) {
    Tensor norm = at::linalg_vector_norm(phi, 2, {1}, true);
    Tensor den = at::where(norm > 0, norm, 1.0);
    Tensor out = phi / den;
    ctx->save_for_backward({phi, norm, den, out});
    return out;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &phi = saved[0], &norm = saved[1], &den = saved[2], &out = saved[3];
    const Tensor& grad = grads[0];
    Tensor grad_norm = at::where(norm > 0, (-grad * (out / den)).sum(1, true), 0.0);
    return {grad / den + (phi / norm * grad_norm).masked_fill_(norm == 0, 0)};
  }
};

// h minus its projection on each row's selected unit (mine [n, M]); the projector is symmetric,
// so the gradient is the same projection of the incoming gradient.
Tensor project_out_plain(const Tensor& h, const Tensor& coef_all, const Tensor& mine,
                         const Tensor& flat_bases) {
  return h - at::matmul((coef_all * mine.unsqueeze(-1)).flatten(1), flat_bases);
}

struct ProjectOut : public torch::autograd::Function<ProjectOut> {
  static Tensor forward(AutogradContext* ctx, const Tensor& h, const Tensor& coef_all,
                        const Tensor& mine, const Tensor& flat_bases) {
    ctx->save_for_backward({mine, flat_bases});
    return project_out_plain(h, coef_all, mine, flat_bases);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &mine = saved[0], &flat_bases = saved[1];
    const Tensor& grad = grads[0];
    std::vector<int64_t> shape = mine.sizes().vec();
    shape.push_back(-1);
    Tensor coef = at::matmul(grad, flat_bases.t()).view(shape);
    return {grad - at::matmul((coef * mine.unsqueeze(-1)).flatten(1), flat_bases), Tensor(),
            Tensor(), Tensor()};
  }
};

Tensor per_sample(const Tensor& c, const Tensor& like) {
  std::vector<int64_t> shape(like.dim(), 1);
  shape[0] = -1;
  return c.reshape(shape).to(like.scalar_type());
}

// The unit's convolution kernels, as the Python side chose them (scaled_grad.conv_forward and
// conv_backward): the im2col kernel for small calls, the default one otherwise.
struct ConvConf {
  int64_t stride, padding;
  bool im2col_forward, im2col_backward;
};

Tensor conv_forward(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                    const ConvConf& cf) {
  if (cf.im2col_forward) {
    return at::_slow_conv2d_forward(x, weight, {weight.size(2), weight.size(3)}, bias,
                                    {cf.stride, cf.stride}, {cf.padding, cf.padding});
  }
  return at::conv2d(x, weight, bias, {cf.stride, cf.stride}, {cf.padding, cf.padding});
}

std::tuple<Tensor, Tensor, Tensor> conv_backward(const Tensor& grad, const Tensor& x,
                                                 const Tensor& weight, const ConvConf& cf,
                                                 std::array<bool, 3> mask) {
  if (cf.im2col_backward) {
    return at::_slow_conv2d_backward(grad, x, weight, {weight.size(2), weight.size(3)},
                                     {cf.stride, cf.stride}, {cf.padding, cf.padding}, mask);
  }
  std::vector<int64_t> bias_sizes{weight.size(0)};
  return at::convolution_backward(grad, x, weight,
                                  mask[2] ? at::OptionalIntArrayRef(bias_sizes) : std::nullopt,
                                  {cf.stride, cf.stride}, {cf.padding, cf.padding}, {1, 1}, false,
                                  {0, 0}, 1, mask);
}

// act(bn_affine(bn_norm(conv(x)))) with Eq. 7's per-sample factor on every parameter gradient
// (conv weight and bias, BN gamma and beta) when `scale` is given; input gradients unscaled.
struct UnitBlock : public torch::autograd::Function<UnitBlock> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight,
                        const std::optional<Tensor>& bias, const Tensor& gamma, const Tensor& beta,
                        const std::optional<Tensor>& scale, const Tensor& running_mean,
                        const Tensor& running_var, int64_t stride, int64_t padding,
                        bool use_batch, double momentum, double eps, double slope,
                        bool im2col_forward, bool im2col_backward) {
    ConvConf cf{stride, padding, im2col_forward, im2col_backward};
    Tensor y = conv_forward(x, weight, bias, cf);
    auto [xhat, save_mean, save_invstd] = at::native_batch_norm(
        y, std::nullopt, std::nullopt, running_mean, running_var, use_batch, momentum, eps);
    Tensor z = xhat * gamma.view({1, -1, 1, 1}) + beta.view({1, -1, 1, 1});
    Tensor out = slope != 0.0 ? at::leaky_relu(z, slope) : at::relu(z);
    Tensor c;
    bool divide = false;
    if (scale.has_value()) {
      c = per_sample(*scale, y);
      divide = scale->ne(0).all().item<bool>();
    }
    ctx->save_for_backward({x, weight, gamma, c, y, xhat, z, save_mean, save_invstd});
    if (!use_batch) {   // running statistics only matter to the backward when they normalised
      ctx->saved_data["running_mean"] = running_mean;
      ctx->saved_data["running_var"] = running_var;
    }
    ctx->saved_data["conf"] = std::vector<int64_t>{stride, padding, use_batch, divide,
                                                   bias.has_value(), im2col_forward,
                                                   im2col_backward};
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["slope"] = slope;
    return out;
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const Tensor &x = saved[0], &weight = saved[1], &gamma = saved[2], &c = saved[3],
                 &y = saved[4], &xhat = saved[5], &z = saved[6], &save_mean = saved[7],
                 &save_invstd = saved[8];
    auto conf = ctx->saved_data["conf"].toIntVector();
    ConvConf cf{conf[0], conf[1], conf[5] != 0, conf[6] != 0};
    bool use_batch = conf[2] != 0, divide_ok = conf[3] != 0, has_bias = conf[4] != 0;
    double eps = ctx->saved_data["eps"].toDouble(), slope = ctx->saved_data["slope"].toDouble();
    std::optional<Tensor> rm, rv;
    if (!use_batch) {
      rm = ctx->saved_data["running_mean"].toTensor();
      rv = ctx->saved_data["running_var"].toTensor();
    }
    const Tensor& grad_out = grads[0];
    // needs_input_grad counts tensor inputs only: an absent bias shifts gamma's and beta's index
    const size_t at_gamma = has_bias ? 3 : 2;
    bool need_x = ctx->needs_input_grad(0), need_w = ctx->needs_input_grad(1);
    bool need_bias = has_bias && ctx->needs_input_grad(2);
    bool need_g = ctx->needs_input_grad(at_gamma), need_b = ctx->needs_input_grad(at_gamma + 1);

    Tensor gz = slope != 0.0 ? at::leaky_relu_backward(grad_out, z, slope, false)
                             : at::threshold_backward(grad_out, z, 0);
    Tensor scaled = c.defined() ? gz * c : gz;
    Tensor grad_g = need_g ? (scaled * xhat).sum({0, 2, 3}) : Tensor();
    Tensor grad_b = need_b ? scaled.sum({0, 2, 3}) : Tensor();
    tensor_list out(16);
    out[3] = grad_g;
    out[4] = grad_b;
    if (!(need_x || need_w || need_bias)) return out;
    Tensor gxhat = gz * gamma.view({1, -1, 1, 1});
    Tensor gy = std::get<0>(at::native_batch_norm_backward(
        gxhat, y, std::nullopt, rm, rv, save_mean, save_invstd, use_batch, eps,
        {true, false, false}));
    Tensor gx, gw, gb;
    if (!c.defined()) {
      std::tie(gx, gw, gb) = conv_backward(gy, x, weight, cf, {need_x, need_w, need_bias});
    } else {
      // parameter gradients from the per-sample scaled gradient; the input gradient of sample b
      // is linear in its own gradient, so dividing by c_b recovers the unscaled one
      bool divide = need_x && divide_ok;
      std::tie(gx, gw, gb) = conv_backward(gy * c, x, weight, cf, {divide, need_w, need_bias});
      if (divide) {
        gx = gx / c;
      } else if (need_x) {
        gx = std::get<0>(conv_backward(gy, x, weight, cf, {true, false, false}));
      }
    }
    out[0] = need_x ? gx : Tensor();
    out[1] = need_w ? gw : Tensor();
    out[2] = need_bias ? gb : Tensor();
    return out;
  }
};

// hrn.py _frozen_step (HRN.route_frozen's step after hashing), the same ATen calls in order:
// normalise h in place, select, take the residue, scatter it into the outputs at `idx`; unless
// `last`, mark the selected units used and return each row's next key (its unit, or M: stop).
std::optional<Tensor> frozen_step(Tensor h, const Tensor& flat_bases_t, const Tensor& flat_bases,
                                  const Tensor& unit_ids, Tensor blocked, const Tensor& idx,
                                  int64_t k, Tensor emb, Tensor l1, Tensor routes, Tensor norms,
                                  const Tensor& one, double tau, int64_t M, int64_t m, bool last) {
  using at::indexing::TensorIndex;
  const int64_t n = h.size(0);
  Tensor norm = at::linalg_vector_norm(h, 2, {1}, true);
  h.div_(at::where(norm > 0, norm, one));
  Tensor coef = at::mm(h, flat_bases_t).view({n, M, m});
  Tensor energy = coef.square().sum(-1).masked_fill_(k == 0 ? blocked : blocked.index({idx}), -1.0);
  Tensor sel = std::get<1>(energy.max(1));
  Tensor mine = sel.unsqueeze(1) == unit_ids;
  Tensor r = h.sub_(at::mm(coef.mul_(mine.unsqueeze(-1)).flatten(1), flat_bases));
  Tensor rn = at::linalg_vector_norm(r, 2, {1}, false);
  emb.index_add_(0, idx, r);
  l1.index_add_(0, idx, r.abs().sum(1));
  routes.index_put_({TensorIndex(idx), TensorIndex(k)}, sel);
  norms.index_put_({TensorIndex(idx), TensorIndex(k)}, rn);
  if (last) return std::nullopt;
  blocked.index_put_({TensorIndex(idx), TensorIndex(sel)}, true);
  return at::where(rn >= tau, sel, M);
}

Tensor feature_hash(const Tensor& y, const Tensor& buckets, const Tensor& signs, int64_t s) {
  return FeatureHash::apply(y, buckets, signs, s);
}

Tensor normalise(const Tensor& phi) { return Normalise::apply(phi); }

Tensor project_out(const Tensor& h, const Tensor& coef_all, const Tensor& mine,
                   const Tensor& flat_bases) {
  return ProjectOut::apply(h, coef_all, mine, flat_bases);
}

Tensor unit_block(const Tensor& x, const Tensor& weight, const std::optional<Tensor>& bias,
                  const Tensor& gamma, const Tensor& beta, const std::optional<Tensor>& scale,
                  const Tensor& running_mean, const Tensor& running_var, int64_t stride,
                  int64_t padding, bool use_batch, double momentum, double eps, double slope,
                  bool im2col_forward, bool im2col_backward) {
  return UnitBlock::apply(x, weight, bias, gamma, beta, scale, running_mean, running_var, stride,
                          padding, use_batch, momentum, eps, slope, im2col_forward,
                          im2col_backward);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "hrn-hw: compiled autograd nodes of the reference's training path";
  m.def("feature_hash", &feature_hash, "phi(y) of the flattened rows (autograd node)");
  m.def("normalise", &normalise, "phi / ||phi|| per row (autograd node)");
  m.def("project_out", &project_out, "residue of h on each row's selected basis (autograd node)");
  m.def("unit_block", &unit_block, "conv -> BN -> affine -> act with Eq. 7 scaling (autograd node)");
  m.def("hash_add_", &hash_add_, "out += phi(flat) row by row, index_add_'s additions in its order");
  m.def("frozen_step", &frozen_step, "route_frozen's step after hashing (hrn._frozen_step), in place");
}
