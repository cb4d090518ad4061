//! Batching image sets into burn tensors.

use burn::tensor::{Device, Int, Tensor, TensorData};

use super::ImageSet;
use super::rng::Rng;

/// Images of `indices` as a `[batch, channels, height, width]` tensor scaled to `[-1, 1]`.
pub fn images(set: &ImageSet, indices: &[usize], device: &Device) -> Tensor<4> {
    let mut values = Vec::with_capacity(indices.len() * set.image_len());
    for &i in indices {
        values.extend(set.image(i).iter().map(|v| v * 2.0 - 1.0));
    }
    let shape = [indices.len(), set.channels, set.height, set.width];
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Labels of `indices` as a `[batch]` integer tensor.
pub fn labels(set: &ImageSet, indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| set.labels[i] as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}

/// The index batches of one epoch: shuffled with `rng` when given, the last batch possibly short.
pub fn epoch_batches(len: usize, batch_size: usize, rng: Option<&mut Rng>) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..len).collect();
    if let Some(rng) = rng {
        rng.shuffle(&mut order);
    }
    order
        .chunks(batch_size.max(1))
        .map(<[usize]>::to_vec)
        .collect()
}

/// An endless source of shuffled batches that never drops the tail of an epoch: when the data
/// runs out mid-batch it reshuffles and fills the batch from the next pass.
#[derive(Debug, Clone)]
pub struct BatchStream {
    len: usize,
    order: Vec<usize>,
    pos: usize,
    rng: Rng,
}

impl BatchStream {
    pub fn new(len: usize, rng: Rng) -> Self {
        let mut s = Self {
            len,
            order: Vec::new(),
            pos: 0,
            rng,
        };
        s.reshuffle();
        s
    }

    fn reshuffle(&mut self) {
        self.order = (0..self.len).collect();
        self.rng.shuffle(&mut self.order);
        self.pos = 0;
    }

    pub fn next_batch(&mut self, size: usize) -> Vec<usize> {
        let mut out = Vec::with_capacity(size);
        while out.len() < size && self.len > 0 {
            if self.pos == self.order.len() {
                self.reshuffle();
            }
            out.push(self.order[self.pos]);
            self.pos += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_batches_cover_every_index_once() {
        let mut rng = Rng::new(3);
        let batches = epoch_batches(10, 4, Some(&mut rng));
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4, 2]);
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn stream_fills_batches_across_epochs() {
        let mut s = BatchStream::new(5, Rng::new(1));
        let a = s.next_batch(3);
        let b = s.next_batch(3);
        assert_eq!(a.len(), 3);
        assert_eq!(b.len(), 3);
        // The first pass is a permutation of 0..5.
        let mut first: Vec<usize> = a.iter().chain(&b[..2]).copied().collect();
        first.sort();
        assert_eq!(first, vec![0, 1, 2, 3, 4]);
    }
}
