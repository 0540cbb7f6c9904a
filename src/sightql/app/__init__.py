"""The Streamlit web app (``sightql app``): thin pages over the library; no logic of their own."""
