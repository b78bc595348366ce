export async function resolve(specifier, context, next) {
  if (specifier === 'roaring') {
    const e = new Error("Cannot find package 'roaring' imported from the server")
    e.code = 'ERR_MODULE_NOT_FOUND'
    throw e
  }
  return next(specifier, context)
}
