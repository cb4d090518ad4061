//! A network's input convolution on the flex CPU backend, as a batched matrix product.
//!
//! burn computes a convolution's weight gradient with a generic rule that convolves the input
//! with the output gradient as a kernel (batch and channels swapped). On burn-flex that is slow
//! for a network's first layer, where the "kernel" is the whole image and the channels are few:
//! for cnn-small's 1→16 convolution on 130 images of 28×28, forward 2 ms but forward + backward
//! (with ReLU and pooling) 56 ms. Written as `W · im2col(x)` the weight gradient becomes one
//! small matrix product per image, and the layer costs 40 ms (`benches/README.md`). The rewrite
//! only pays where the input needs no gradient (the input layer), so deeper layers, other
//! backends and other convolution shapes keep burn's own `Conv2d::forward`.

use burn::nn::PaddingConfig2d;
use burn::nn::conv::Conv2d;
use burn::tensor::ops::PadMode;
use burn::tensor::{Device, Tensor};

/// `conv.forward(x)`, computed as a matrix product when that is measurably faster: on flex,
/// for a 3×3, stride-1, padding-1 convolution of an input that needs no gradient.
pub fn input_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    if matrix_product_pays(conv, &x) {
        im2col_conv3x3(conv, x)
    } else {
        conv.forward(x)
    }
}

/// Whether [`input_conv`] takes the matrix-product path for `conv` on `x`.
fn matrix_product_pays(conv: &Conv2d, x: &Tensor<4>) -> bool {
    conv.kernel_size == [3, 3]
        && conv.stride == [1, 1]
        && conv.dilation == [1, 1]
        && conv.groups == 1
        && conv.padding == PaddingConfig2d::Explicit(1, 1, 1, 1)
        && !x.is_require_grad()
        && x.device().without_autodiff() == Device::flex()
}

/// A 3×3, stride-1, padding-1 convolution as `W [out, in·9] · cols [batch, in·9, h·w]`.
fn im2col_conv3x3(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [batch, c_in, h, w] = x.dims();
    let c_out = conv.weight.dims()[0];
    let padded = x.pad((1, 1, 1, 1), PadMode::Constant(0.0));
    let shifted: Vec<Tensor<4>> = (0..9)
        .map(|k| {
            let (i, j) = (k / 3, k % 3);
            padded
                .clone()
                .slice([0..batch, 0..c_in, i..i + h, j..j + w])
        })
        .collect();
    // [batch, in, 9, h, w]: the row order of the weight's [in, 3, 3] flattening.
    let cols: Tensor<5> = Tensor::stack(shifted, 2);
    let cols: Tensor<3> = cols.reshape([batch, c_in * 9, h * w]);
    let weight: Tensor<3> = conv.weight.val().reshape([1, c_out, c_in * 9]);
    let mut y = weight.matmul(cols);
    if let Some(bias) = &conv.bias {
        y = y + bias.val().reshape([1, c_out, 1]);
    }
    y.reshape([batch, c_out, h, w])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cnn::conv3x3;
    use burn::tensor::Distribution;

    fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The matrix-product path gives burn's convolution and its gradients, for one and for
    /// three input channels.
    #[test]
    fn the_matrix_product_path_is_burns_convolution() {
        let device = Device::flex().autodiff();
        for c_in in [1, 3] {
            let conv = conv3x3(c_in, 8, 1, &device);
            let x = Tensor::<4>::random([5, c_in, 9, 7], Distribution::Normal(0.0, 1.0), &device);
            let reference = conv.forward(x.clone());
            let fast = im2col_conv3x3(&conv, x.clone());
            assert_eq!(fast.dims(), reference.dims());
            assert!(max_diff(fast.clone(), reference.clone()) < 1e-5);
            // A loss that weighs every output differently, so a transposed gradient shows.
            let weights = Tensor::<4>::random(reference.dims(), Distribution::Default, &device);
            let g_ref = (reference * weights.clone()).sum().backward();
            let g_fast = (fast * weights).sum().backward();
            let w = |g| conv.weight.grad(g).unwrap();
            let b = |g| conv.bias.as_ref().unwrap().grad(g).unwrap();
            assert!(
                max_diff(w(&g_ref), w(&g_fast)) < 1e-4,
                "weight gradient, {c_in} in"
            );
            assert!(
                max_diff(b(&g_ref), b(&g_fast)) < 1e-4,
                "bias gradient, {c_in} in"
            );
        }
    }

    /// Only flex takes the matrix-product path, only for an input without gradient, and only
    /// for the 3×3 stride-1 convolution it implements.
    #[test]
    fn the_path_depends_on_backend_gradient_and_shape() {
        let flex = Device::flex().autodiff();
        let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &flex);
        assert!(matrix_product_pays(&conv3x3(1, 4, 1, &flex), &x));
        assert!(!matrix_product_pays(
            &conv3x3(1, 4, 1, &flex),
            &x.clone().require_grad()
        ));
        assert!(!matrix_product_pays(&conv3x3(1, 4, 2, &flex), &x));
        #[allow(deprecated)]
        let ndarray = Device::ndarray().autodiff();
        let x = Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &ndarray);
        assert!(!matrix_product_pays(&conv3x3(1, 4, 1, &ndarray), &x));
    }
}
