FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY l2l l2l
COPY controller controller
COPY search_spaces search_spaces
COPY api api
RUN pip install --no-cache-dir ".[postgres]"
EXPOSE 8000
CMD ["l2l", "serve", "--host", "0.0.0.0"]
