//! The convolution block `maxpool2(relu(conv3x3(x)))` as one operation on the flex CPU backend.
//!
//! burn-flex computes a convolution's weight gradient with burn's generic rule (a convolution of
//! the input with the output gradient as its kernel, batch and channels swapped, two layout
//! copies) and its input gradient with a transposed convolution; with the ReLU and the pooling
//! as separate operations, cnn-small's support step spent most of its time there
//! (`benches/README.md`). [`conv_relu_pool`] computes the whole block in one pass over each
//! image (`kernel`) and its backward as two matrix products, registered with burn's autodiff as
//! a custom operation through a backend extension. On burn's cubecl backend (wgpu) the same
//! block is five CubeCL kernels (`cube`), registered with burn's fusion as opaque operations.
//! ndarray, other convolution shapes and other dtypes keep burn's own `Conv2d`, `relu` and
//! `MaxPool2d`, which compute the same function; so does wgpu when `SOPHON_WGPU_FUSED=0` (the
//! A/B of benches/README.md).

mod cube;
mod kernel;

use std::sync::Arc;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::tensor::FloatTensor;
use burn::backend::wgpu::CubeBackend;
use burn::backend::{Autodiff, Backend, Cube, Dispatch, DispatchDevice, Flex, backend_extension};
use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::nn::pool::MaxPool2d;
use burn::tensor::activation::relu;
use burn::tensor::{DType, Device, Tensor, TensorData};

use kernel::Dims;

/// `pool.forward(relu(conv.forward(x)))`, as one operation where that is implemented: on flex,
/// f32, a 3×3 stride-1 padding-1 convolution with bias and an even-sized input, pooled 2×2.
pub fn conv_relu_pool(conv: &Conv2d, pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match &conv.bias {
        Some(bias) if fused_applies(conv, pool, &x) => {
            let y = <Dispatch as ConvBlockOps>::conv3x3_relu_pool2(
                x.into_dispatch(),
                conv.weight.val().into_dispatch(),
                bias.val().into_dispatch(),
            );
            Tensor::from_dispatch(y)
        }
        _ => pool.forward(relu(conv.forward(x))),
    }
}

/// Whether the fused block runs on `device` (without autodiff) for `c_in` → `c_out` channels:
/// always on flex; on the cubecl backend (wgpu) unless `SOPHON_WGPU_FUSED=0`, and for at most
/// [`cube::MAX_CHANNELS`] channels each way (its kernels keep one sum per channel in registers).
fn fused_backend(device: &Device, c_in: usize, c_out: usize) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Cube(_) => {
            wgpu_fused() && c_in <= cube::MAX_CHANNELS && c_out <= cube::MAX_CHANNELS
        }
        _ => false,
    }
}

/// `SOPHON_WGPU_FUSED=0` turns the fused block off on wgpu (read once).
pub fn wgpu_fused() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("SOPHON_WGPU_FUSED").map_or(true, |v| v != "0"))
}

/// What computes a 3×3 convolution → ReLU → 2×2 max-pool block on wgpu, for `bench` and the
/// logs.
pub fn wgpu_blocks_line() -> &'static str {
    if wgpu_fused() {
        "fused CubeCL kernels (SOPHON_WGPU_FUSED=0 for burn's operations)"
    } else {
        "burn's convolution, ReLU and max-pool (SOPHON_WGPU_FUSED=0)"
    }
}

/// Whether [`conv_relu_pool`] takes the fused path for `conv` and `pool` on `x`.
pub fn fused_applies(conv: &Conv2d, pool: &MaxPool2d, x: &Tensor<4>) -> bool {
    let [_, _, h, w] = x.dims();
    conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.padding == PaddingConfig2d::Explicit(1, 1, 1, 1)
        && conv.bias.is_some()
        && pool.kernel_size == [2, 2]
        && pool.stride == [2, 2]
        && pool.dilation == [1, 1]
        && pool.padding == PaddingConfig2d::Valid
        && !pool.ceil_mode
        && h.is_multiple_of(2)
        && w.is_multiple_of(2)
        && w >= 2
        && x.dtype() == DType::F32
        && conv.weight.val().dtype() == DType::F32
        && fused_backend(
            &x.device().without_autodiff(),
            conv.weight.dims()[1],
            conv.weight.dims()[0],
        )
}

/// The fused block as a backend operation: flex and cubecl compute it, autodiff on either
/// records its backward. Only called where [`fused_applies`] holds.
#[backend_extension(Flex, Cube, Fusion, Autodiff)]
pub trait ConvBlockOps: Backend {
    /// `maxpool2(relu(conv3x3(x, weight) + bias))`; `x` `[batch, in, h, w]`, `weight`
    /// `[out, in, 3, 3]`, `bias` `[out]` → `[batch, out, h/2, w/2]`.
    #[fusion(meta = cube::pooled_spec)]
    fn conv3x3_relu_pool2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self>;
}

impl ConvBlockOps for Flex {
    fn conv3x3_relu_pool2(x: FlexTensor, weight: FlexTensor, bias: FlexTensor) -> FlexTensor {
        block_forward(&x, &weight, &bias).0
    }
}

/// The cubecl backend's forward with its routing codes, and its backward: what autodiff on
/// cubecl records and replays (fusion defers each as one opaque operation).
#[backend_extension(Cube, Fusion)]
pub trait CubeBlockOps: Backend {
    /// The pooled output and its routing codes (0–3: which of the window won; 4: closed).
    #[fusion(meta = cube::routed_spec)]
    fn conv3x3_relu_pool2_routed(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>);

    /// The input (where `input_grad`; else a `[1]` placeholder), weight and bias gradients.
    #[fusion(meta = cube::backward_spec)]
    fn conv3x3_relu_pool2_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        codes: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl ConvBlockOps for CubeBackend {
    fn conv3x3_relu_pool2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        cube::forward(x, weight, bias).0
    }
}

impl CubeBlockOps for CubeBackend {
    fn conv3x3_relu_pool2_routed(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        cube::forward(x, weight, bias)
    }

    fn conv3x3_relu_pool2_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        codes: FloatTensor<Self>,
        dy: FloatTensor<Self>,
        input_grad: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        cube::backward(x, weight, codes, dy, input_grad)
    }
}

impl<C: CheckpointStrategy> ConvBlockOps for Autodiff<Cube, C> {
    fn conv3x3_relu_pool2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (xp, wp, bp) = (
            x.primitive().clone(),
            weight.primitive().clone(),
            bias.primitive().clone(),
        );
        match CubeBlockBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let (y, codes) = Cube::conv3x3_relu_pool2_routed(xp, wp, bp);
                prep.finish((x_state, weight_state, codes), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(Cube::conv3x3_relu_pool2(xp, wp, bp)),
        }
    }
}

/// The cubecl block's backward: the three gradients from the routing codes.
#[derive(Debug)]
struct CubeBlockBackward;

impl Backward<Cube, 3> for CubeBlockBackward {
    /// The input's and the weight's nodes, the forward's routing codes.
    type State = (NodeId, NodeId, FloatTensor<Cube>);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = grads.consume::<Cube>(&ops.node);
        let (x_state, weight_state, codes) = ops.state;
        let x: FloatTensor<Cube> = checkpointer.retrieve_node_output(x_state);
        let weight: FloatTensor<Cube> = checkpointer.retrieve_node_output(weight_state);
        let (dx, dw, db) =
            Cube::conv3x3_relu_pool2_backward(x, weight, codes, dy, node_x.is_some());
        if let Some(node) = node_x {
            grads.register::<Cube>(node.id, dx);
        }
        if let Some(node) = node_weight {
            grads.register::<Cube>(node.id, dw);
        }
        if let Some(node) = node_bias {
            grads.register::<Cube>(node.id, db);
        }
    }
}

impl<C: CheckpointStrategy> ConvBlockOps for Autodiff<Flex, C> {
    fn conv3x3_relu_pool2(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let forward = || block_forward(x.primitive(), weight.primitive(), bias.primitive());
        match BlockBackward
            .prepare::<C>([x.node(), weight.node(), bias.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let x_state = prep.checkpoint(&x);
                let weight_state = prep.checkpoint(&weight);
                let (y, codes, dims) = forward();
                prep.finish((x_state, weight_state, Arc::new(codes), dims), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward().0),
        }
    }
}

/// The block's backward: the input, weight and bias gradients from the routing codes.
#[derive(Debug)]
struct BlockBackward;

impl Backward<Flex, 3> for BlockBackward {
    /// The input's and the weight's nodes, the forward's routing codes, the sizes.
    type State = (NodeId, NodeId, Arc<Vec<u8>>, Dims);

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let [node_x, node_weight, node_bias] = ops.parents;
        let dy = grads.consume::<Flex>(&ops.node);
        let (x_state, weight_state, codes, d) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_state);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight_state);
        let (dx, dw, db) = kernel::backward(
            &f32s(&x),
            &f32s(&weight),
            &codes,
            &f32s(&dy),
            d,
            node_x.is_some(),
        );
        if let (Some(node), Some(dx)) = (node_x, dx) {
            grads.register::<Flex>(node.id, tensor(dx, [d.batch, d.c_in, d.h, d.w]));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, tensor(dw, [d.c_out, d.c_in, 3, 3]));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, tensor(db, [d.c_out]));
        }
    }
}

/// The forward on flex tensors: the pooled output, the routing codes and the sizes.
fn block_forward(
    x: &FlexTensor,
    weight: &FlexTensor,
    bias: &FlexTensor,
) -> (FlexTensor, Vec<u8>, Dims) {
    let [batch, c_in, h, w] = dims(x);
    let c_out = dims::<4>(weight)[0];
    let d = Dims {
        batch,
        c_in,
        c_out,
        h,
        w,
    };
    let (y, codes) = kernel::forward(&f32s(x), &f32s(weight), &f32s(bias), d);
    (tensor(y, [batch, c_out, h / 2, w / 2]), codes, d)
}

fn dims<const D: usize>(t: &FlexTensor) -> [usize; D] {
    let shape = t.layout().shape();
    std::array::from_fn(|i| shape[i])
}

/// A flex tensor's values in row-major order (borrowed when it is contiguous).
fn f32s(t: &FlexTensor) -> std::borrow::Cow<'_, [f32]> {
    match t.as_slice::<f32>() {
        Some(values) => values.into(),
        None => t
            .to_contiguous()
            .as_slice::<f32>()
            .expect("contiguous")
            .to_vec()
            .into(),
    }
}

fn tensor<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cnn::{conv3x3, pool2};
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The fused block is burn's convolution, ReLU and pooling, with the same input, weight and
    /// bias gradients, for one and for several input channels, with and without an input
    /// gradient.
    #[test]
    fn the_fused_block_is_burns_convolution_relu_and_pooling() {
        let device = Device::flex().autodiff();
        let pool = pool2();
        for (c_in, input_grad) in [(1, false), (3, true), (16, true)] {
            let conv = conv3x3(c_in, 8, 1, &device);
            let mut x =
                Tensor::<4>::random([5, c_in, 10, 8], Distribution::Normal(0.0, 1.0), &device);
            if input_grad {
                x = x.require_grad();
            }
            assert!(fused_applies(&conv, &pool, &x));
            let reference = pool.forward(relu(conv.forward(x.clone())));
            let fused = conv_relu_pool(&conv, &pool, x.clone());
            assert_eq!(fused.dims(), reference.dims());
            assert!(max_diff(fused.clone(), reference.clone()) < 1e-5);
            // A loss that weighs every output differently, so a misrouted gradient shows.
            let weights = Tensor::<4>::random(reference.dims(), Distribution::Default, &device);
            let g_ref = (reference * weights.clone()).sum().backward();
            let g_fused = (fused * weights).sum().backward();
            let w = |g| conv.weight.grad(g).unwrap();
            let b = |g| conv.bias.as_ref().unwrap().grad(g).unwrap();
            assert!(max_diff(w(&g_ref), w(&g_fused)) < 1e-4, "weight, {c_in} in");
            assert!(max_diff(b(&g_ref), b(&g_fused)) < 1e-4, "bias, {c_in} in");
            match (x.grad(&g_ref), x.grad(&g_fused)) {
                (Some(a), Some(b)) => assert!(max_diff(a, b) < 1e-4, "input, {c_in} in"),
                (None, None) => assert!(!input_grad),
                _ => panic!("input gradient present in one path only, {c_in} in"),
            }
        }
    }

    /// Without autodiff (evaluation) the fused block gives the same values.
    #[test]
    fn the_fused_block_runs_without_autodiff() {
        let device = Device::flex();
        let (conv, pool) = (conv3x3(2, 4, 1, &device), pool2());
        let x = Tensor::<4>::random([3, 2, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let reference = pool.forward(relu(conv.forward(x.clone())));
        assert!(max_diff(conv_relu_pool(&conv, &pool, x), reference) < 1e-5);
    }

    /// Only flex takes the fused path, only for the 3×3 stride-1 convolution with bias and
    /// the 2×2 pooling of an even-sized input it implements.
    #[test]
    fn the_path_depends_on_backend_and_shape() {
        let flex = Device::flex().autodiff();
        let pool = pool2();
        let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &flex);
        assert!(fused_applies(&conv3x3(1, 4, 1, &flex), &pool, &x));
        assert!(!fused_applies(&conv3x3(1, 4, 2, &flex), &pool, &x));
        let odd = Tensor::<4>::random([2, 1, 7, 6], Distribution::Default, &flex);
        assert!(!fused_applies(&conv3x3(1, 4, 1, &flex), &pool, &odd));
        #[allow(deprecated)]
        let ndarray = Device::ndarray().autodiff();
        let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &ndarray);
        assert!(!fused_applies(&conv3x3(1, 4, 1, &ndarray), &pool, &x));
    }
}
