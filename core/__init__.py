"""Digit Studio's engine: data, models, training, run store, preprocessing and inference. Never imports streamlit."""
