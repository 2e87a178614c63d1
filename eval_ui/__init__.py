"""The Gradio faces of WizardLab: one module per tab, each with `build_tab(ctx)`."""
