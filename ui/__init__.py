"""MedTune Workbench browser front end (Gradio). Turns widgets into engine calls; holds no
training, metric math or file formats of its own."""
