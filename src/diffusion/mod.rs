//! DDPM: the noise schedule, forward noising, the ε-MSE training loss and the ancestral sampler.
//! Knows tensors, not models: the denoiser is any `Fn(x_t, t) -> ε̂`.

pub mod schedule;

pub use schedule::Schedule;
