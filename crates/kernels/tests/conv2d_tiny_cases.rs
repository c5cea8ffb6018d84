//! Hand-worked tiny convolutions with their expected values written out (both the direct
//! and the GEMM paths, with padding and an all-padding border), and im2col / col2im. Each
//! is small enough to check by hand in the comment next to it.

mod common;

use common::*;
use petal_kernels::*;

fn conv_run(s: &Conv2dShape, x: &[f32], w: &[f32], b: Option<&[f32]>) -> Vec<f32> {
    let mut y = vec![f32::NAN; s.output_len()];
    let mut scratch = vec![f32::NAN; s.scratch_len()];
    conv2d_forward(s, x, w, b, &mut y, &mut scratch);
    y
}

fn conv_grads(s: &Conv2dShape, x: &[f32], w: &[f32], dy: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut scratch = vec![f32::NAN; s.scratch_len()];
    let mut gw = vec![f32::NAN; s.weight_len()];
    let mut gb = vec![f32::NAN; s.out_c];
    let mut gx = vec![f32::NAN; s.input_len()];
    conv2d_backward_weights(s, x, dy, &mut gw, Some(&mut gb), &mut scratch);
    conv2d_backward_input(s, w, dy, &mut gx, &mut scratch);
    (gw, gb, gx)
}

/// x = [[1,2,3],[4,5,6],[7,8,9]], W = [[1,0],[0,-1]], b = 0.5:
/// every output is x[i][j] - x[i+1][j+1] + 0.5 = -4 + 0.5 = -3.5.
#[test]
fn conv2d_hand_worked_difference_kernel() {
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let w = [1.0, 0.0, 0.0, -1.0];
    let direct = conv(1, 1, 3, 3, 1, 2, 2, 1, 0);
    assert!(direct_weight_grad(&direct));
    assert_eq!(conv_run(&direct, &x, &w, Some(&[0.5])), vec![-3.5; 4]);
    // Stride 2 (the GEMM path): only output (0, 0), the same value.
    let strided = conv(1, 1, 3, 3, 1, 2, 2, 2, 0);
    assert!(!direct_weight_grad(&strided));
    assert_eq!(conv_run(&strided, &x, &w, Some(&[0.5])), vec![-3.5]);
}

/// x = [[1,2],[3,4]], W = [[1,2,3],[4,5,6],[7,8,9]], pad 1, stride 1, no bias.
/// Output (i, j) reads x[i+u-1][j+v-1]:
/// y00 = 5·1 + 6·2 + 8·3 + 9·4 = 77, y01 = 4·1 + 5·2 + 7·3 + 8·4 = 67,
/// y10 = 2·1 + 3·2 + 5·3 + 6·4 = 47, y11 = 1·1 + 2·2 + 4·3 + 5·4 = 37.
/// With dy = ones: dW[u][v] = Σ_{i,j} x[i+u-1][j+v-1] = [[1,3,2],[4,10,6],[3,7,4]],
/// db = 4, dx[a][b] = Σ_{i,j} W[a-i+1][b-j+1] = [12, 16, 24, 28].
#[test]
fn conv2d_hand_worked_padded_direct() {
    let s = conv(1, 1, 2, 2, 1, 3, 3, 1, 1);
    assert!(direct_weight_grad(&s));
    let x = [1.0, 2.0, 3.0, 4.0];
    let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    assert_eq!(conv_run(&s, &x, &w, None), vec![77.0, 67.0, 47.0, 37.0]);
    let (gw, gb, gx) = conv_grads(&s, &x, &w, &[1.0; 4]);
    assert_eq!(gw, vec![1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0]);
    assert_eq!(gb, vec![4.0]);
    assert_eq!(gx, vec![12.0, 16.0, 24.0, 28.0]);
    // dy = [1, 0, 0, 0]: only output (0, 0), which reads x[a][b] through W[a+1][b+1].
    let (_, gb, gx) = conv_grads(&s, &x, &w, &[1.0, 0.0, 0.0, 0.0]);
    assert_eq!(gb, vec![1.0]);
    assert_eq!(gx, vec![5.0, 6.0, 8.0, 9.0]);
}

/// The same with stride 2 (GEMM path): one output, y = 77; dW[u][v] = x[u-1][v-1]
/// = [[0,0,0],[0,1,2],[0,3,4]]; dx = [W11, W12, W21, W22] = [5, 6, 8, 9].
#[test]
fn conv2d_hand_worked_padded_strided_gemm() {
    let s = conv(1, 1, 2, 2, 1, 3, 3, 2, 1);
    assert!(!direct_weight_grad(&s));
    let x = [1.0, 2.0, 3.0, 4.0];
    let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    assert_eq!(conv_run(&s, &x, &w, Some(&[-7.0])), vec![70.0]);
    let (gw, gb, gx) = conv_grads(&s, &x, &w, &[1.0]);
    assert_eq!(gw, vec![0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    assert_eq!(gb, vec![1.0]);
    assert_eq!(gx, vec![5.0, 6.0, 8.0, 9.0]);
}

/// A 1x1 kernel with pad 1 on a 1x1 image: a 3x3 output whose border reads only padding
/// and equals the bias; the centre is 2·3 + 1 = 7. With stride 2 every output is border.
#[test]
fn conv2d_hand_worked_all_padding_border() {
    let direct = conv(1, 1, 1, 1, 1, 1, 1, 1, 1);
    assert_eq!(
        conv_run(&direct, &[3.0], &[2.0], Some(&[1.0])),
        vec![1.0, 1.0, 1.0, 1.0, 7.0, 1.0, 1.0, 1.0, 1.0]
    );
    let (gw, gb, gx) = conv_grads(&direct, &[3.0], &[2.0], &[1.0; 9]);
    assert_eq!((gw, gb, gx), (vec![3.0], vec![9.0], vec![2.0]));
    let strided = conv(1, 1, 1, 1, 1, 1, 1, 2, 1);
    assert_eq!(conv_run(&strided, &[3.0], &[2.0], Some(&[1.0])), vec![1.0; 4]);
    let (gw, gb, gx) = conv_grads(&strided, &[3.0], &[2.0], &[1.0; 4]);
    assert_eq!((gw, gb, gx), (vec![0.0], vec![4.0], vec![0.0]));
}

/// im2col of a 2x2 image with a 2x2 kernel and pad 1 (3x3 output): tap (0, 0) reads
/// x[i-1][j-1], so its row is [0,0,0, 0,1,2, 0,3,4]; tap (1, 1) reads x[i][j]:
/// [1,2,0, 3,4,0, 0,0,0]. col2im of all ones counts the taps reading each pixel: 4 each.
#[test]
fn im2col_col2im_hand_worked() {
    let s = conv(1, 1, 2, 2, 1, 2, 2, 1, 1);
    let mut col = vec![f32::NAN; s.col_len()];
    im2col(&s, &[1.0, 2.0, 3.0, 4.0], &mut col);
    assert_eq!(&col[..9], &[0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 4.0]);
    assert_eq!(&col[27..], &[1.0, 2.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0]);
    let mut dx = vec![f32::NAN; 4];
    col2im(&s, &vec![1.0; s.col_len()], &mut dx);
    assert_eq!(dx, vec![4.0; 4]);
}
