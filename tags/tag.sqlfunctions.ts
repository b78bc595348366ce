/**
 * The functions a SQL tag may call, by name, grouped as the engine's `system.functions` groups
 * them (its `categories`): aggregates (window functions among them), arithmetic, dates, strings,
 * JSON, conditionals, arrays, maps, tuples, bitmaps, hashes, conversions, with the aliases of
 * these. Nothing that reads server state (host, version, settings, user, files, disks, ports,
 * uptime: the engine's "Other" and "Introspection" groups), dictionaries, the network, AI,
 * encryption, randomness or internal helpers (`__getScalar`). `timezone()` and
 * `serverTimezone()` tell the server's zone, `format()` is also a table function: left out.
 *
 * The list is this code's, not the engine's: a new engine version adds functions, and none of
 * them is callable until it is added here. tag.sqlfunctions.test.ts checks every name against the
 * engine's own list and that no server-information function is among them.
 */

const list = (s: string): readonly string[] => Object.freeze(s.trim().split(/\s+/))

export const SQL_TAG_FUNCTION_GROUPS = Object.freeze({
  aggregate: list(`
    analysisOfVariance anova any any_respect_nulls any_value any_value_respect_nulls anyHeavy anyLast
    anyLast_respect_nulls anyLastRespectNulls anyRespectNulls anyValueRespectNulls approx_top_count approx_top_k
    approx_top_sum argAndMax argAndMin argMax argMin array_agg avg avgWeighted BIT_AND BIT_OR BIT_XOR boundingRatio
    categoricalInformationValue contingency corr corrMatrix corrStable count COVAR_POP COVAR_SAMP covarPop
    covarPopMatrix covarPopStable covarSamp covarSampMatrix covarSampStable cramersV cramersVBiasCorrected cume_dist
    deltaSum deltaSumTimestamp dense_rank denseRank distinctDynamicTypes distinctJSONPaths distinctJSONPathsAndTypes
    entropy estimateCompressionRatio exponentialMovingAverage exponentialTimeDecayedAvg exponentialTimeDecayedCount
    exponentialTimeDecayedMax exponentialTimeDecayedSum first_value first_value_respect_nulls firstValueRespectNulls
    flameGraph group_concat groupArray groupArrayInsertAt groupArrayIntersect groupArrayLast groupArrayMovingAvg
    groupArrayMovingSum groupArraySample groupArraySorted groupBitAnd groupBitmap groupBitmapAnd groupBitmapOr
    groupBitmapXor groupBitOr groupBitXor groupConcat groupFormat groupNumericIndexedVector groupUniqArray histogram
    intervalLengthSum kolmogorovSmirnovTest kurtPop kurtSamp lag lagInFrame largestTriangleThreeBuckets last_value
    last_value_respect_nulls lastValueRespectNulls lead leadInFrame lttb mannWhitneyUTest max max_by
    maxIntersections maxIntersectionsPosition maxMappedArrays meanZTest median medianBFloat16 medianBFloat16Weighted
    medianDD medianDeterministic medianExact medianExactHigh medianExactLow medianExactWeighted
    medianExactWeightedInterpolated medianGK medianInterpolatedWeighted medianTDigest medianTDigestWeighted
    medianTiming medianTimingWeighted min min_by minMappedArrays nonNegativeDerivative nothing nothingNull
    nothingUInt64 nth_value ntile percent_rank percentRank quantile quantileBFloat16 quantileBFloat16Weighted
    quantileDD quantileDeterministic quantileExact quantileExactExclusive quantileExactHigh quantileExactInclusive
    quantileExactLow quantileExactWeighted quantileExactWeightedInterpolated quantileGK quantileInterpolatedWeighted
    quantilePrometheusHistogram quantiles quantilesBFloat16 quantilesBFloat16Weighted quantilesDD
    quantilesDeterministic quantilesExact quantilesExactExclusive quantilesExactHigh quantilesExactInclusive
    quantilesExactLow quantilesExactWeighted quantilesExactWeightedInterpolated quantilesGK
    quantilesInterpolatedWeighted quantilesPrometheusHistogram quantilesTDigest quantilesTDigestWeighted
    quantilesTiming quantilesTimingWeighted quantileTDigest quantileTDigestWeighted quantileTiming
    quantileTimingWeighted rank rankCorr retention row_number sequenceCount sequenceMatch sequenceMatchEvents
    sequenceNextNode simpleLinearRegression singleValueOrNull skewPop skewSamp sparkbar sparkBar STD STDDEV
    STDDEV_POP STDDEV_SAMP stddevPop stddevPopStable stddevSamp stddevSampStable string_agg studentTTest
    studentTTestOneSample sum sumCount sumKahan sumMapFiltered sumMapFilteredWithOverflow sumMappedArrays
    sumMapWithOverflow sumWithOverflow theilsU timeSeriesChangesToGrid timeSeriesDeltaToGrid timeSeriesDerivToGrid
    timeSeriesGroupArray timeSeriesIncreaseToGrid timeSeriesInstantDeltaToGrid timeSeriesInstantRateToGrid
    timeSeriesLastToGrid timeSeriesLastTwoSamples timeSeriesPredictLinearToGrid timeSeriesRateToGrid
    timeSeriesResampleToGridWithStaleness timeSeriesResetsToGrid topK topKWeighted uniq uniqCombined uniqCombined64
    uniqExact uniqHLL12 uniqUpTo VAR_POP VAR_SAMP varPop varPopStable varSamp varSampStable welchTTest windowFunnel
  `),
  arithmetic: list(`
    abs avg2 byteSwap divide divideDecimal divideOrNull gcd ifNotFinite intDiv intDivOrNull intDivOrZero isFinite
    isInfinite isNaN lcm max2 midpoint min2 minus mod modOrNull modulo moduloLegacy moduloOrNull moduloOrZero
    multiply multiplyDecimal negate plus pmod pmodOrNull positive_modulo positive_modulo_or_null positiveModulo
    positiveModuloOrNull sqr
  `),
  array: list(`
    array array_remove arrayAll arrayAUC arrayAUCPR arrayAutocorrelation arrayAvg arrayBottomK arrayCompact
    arrayConcat arrayCount arrayCumSum arrayCumSumNonNegative arrayDifference arrayDistinct arrayDotProduct
    arrayElement arrayElementOrNull arrayEnumerate arrayEnumerateDense arrayEnumerateDenseRanked arrayEnumerateUniq
    arrayEnumerateUniqRanked arrayExcept arrayExists arrayFill arrayFilter arrayFirst arrayFirstIndex
    arrayFirstOrNull arrayFlatten arrayFold arrayIntersect arrayJaccardIndex arrayJoin arrayLast arrayLastIndex
    arrayLastOrNull arrayLevenshteinDistance arrayLevenshteinDistanceWeighted arrayMap arrayMax arrayMin
    arrayNormalizedGini arrayPartialReverseSort arrayPartialShuffle arrayPartialSort arrayPopBack arrayPopFront
    arrayPRAUC arrayProduct arrayPushBack arrayPushFront arrayRandomSample arrayReduce arrayReduceInRanges
    arrayRemove arrayResize arrayReverse arrayReverseFill arrayReverseSort arrayReverseSplit arrayROCAUC
    arrayRotateLeft arrayRotateRight arrayShiftLeft arrayShiftRight arrayShingles arrayShuffle arraySimilarity
    arraySlice arraySort arraySplit arraySum arraySymmetricDifference arrayTopK arrayTranspose arrayUnion arrayUniq
    arrayWithConstant arrayZip arrayZipUnaligned CARDINALITY countEqual empty emptyArrayDate emptyArrayDateTime
    emptyArrayFloat32 emptyArrayFloat64 emptyArrayInt16 emptyArrayInt32 emptyArrayInt64 emptyArrayInt8
    emptyArrayString emptyArrayToSingle emptyArrayUInt16 emptyArrayUInt32 emptyArrayUInt64 emptyArrayUInt8 flatten
    has hasAll hasAny hasSubstr indexOf indexOfAssumeSorted length notEmpty OCTET_LENGTH randomHadamardTransform
    range replicate reverse unnest
  `),
  bit: list(`
    bitAnd bitCount bitHammingDistance bitNot bitOr bitRotateLeft bitRotateRight bitShiftLeft bitShiftRight bitSlice
    bitTest bitTestAll bitTestAny bitXor
  `),
  bitmap: list(`
    bitmapAnd bitmapAndCardinality bitmapAndnot bitmapAndnotCardinality bitmapBuild bitmapCardinality bitmapContains
    bitmapHasAll bitmapHasAny bitmapMax bitmapMin bitmapOr bitmapOrCardinality bitmapSubsetInRange bitmapSubsetLimit
    bitmapToArray bitmapTransform bitmapXor bitmapXorCardinality subBitmap
  `),
  comparison: list(`
    equals globalIn globalInIgnoreSet globalNotIn globalNotInIgnoreSet globalNotNullIn globalNotNullInIgnoreSet
    globalNullIn globalNullInIgnoreSet greater greaterOrEquals in inIgnoreSet isDistinctFrom isNotDistinctFrom less
    lessOrEquals notEquals notIn notInIgnoreSet notNullIn notNullInIgnoreSet nullIn nullInIgnoreSet
  `),
  conditional: list(`
    caseWithoutExpr caseWithoutExpression clamp greatest if least multiIf
  `),
  date: list(`
    addDate addDays addHours addInterval addMicroseconds addMilliseconds addMinutes addMonths addNanoseconds
    addQuarters addSeconds addTupleOfIntervals addWeeks addYears age changeDay changeHour changeMinute changeMonth
    changeSecond changeYear curdate current_date current_timestamp date_bin date_diff DATE_DIFF DATE_FORMAT
    DATE_TRUNC dateDiff dateName dateTrunc DAY DAYOFMONTH DAYOFWEEK DAYOFYEAR formatDateTime
    formatDateTimeInJodaSyntax FROM_DAYS FROM_UNIXTIME from_utc_timestamp fromDaysSinceYearZero
    fromDaysSinceYearZero32 fromModifiedJulianDay fromModifiedJulianDayOrNull fromUnixTimestamp
    fromUnixTimestampInJodaSyntax fromUTCTimestamp HOUR LAST_DAY localtime localtimestamp makeDate makeDate32
    makeDateTime makeDateTime64 MICROSECOND MILLISECOND MINUTE MONTH monthName NANOSECOND now now64 nowInBlock
    nowInBlock64 QUARTER SECOND subDate subtractDays subtractHours subtractInterval subtractMicroseconds
    subtractMilliseconds subtractMinutes subtractMonths subtractNanoseconds subtractQuarters subtractSeconds
    subtractTupleOfIntervals subtractWeeks subtractYears time_bucket timeDiff timeSlot timeSlots timestamp
    TIMESTAMP_DIFF timestamp_diff timestampDiff timezoneOf timeZoneOf timezoneOffset timeZoneOffset TO_DAYS
    to_utc_timestamp today toDayOfMonth toDayOfWeek toDayOfYear toDaysInMonth toDaysSinceYearZero toHour toISOWeek
    toISOYear toLastDayOfMonth toLastDayOfWeek toMicrosecond toMillisecond toMinute toModifiedJulianDay
    toModifiedJulianDayOrNull toMonday toMonth toMonthNumSinceEpoch toNanosecond toQuarter toRelativeDayNum
    toRelativeHourNum toRelativeMinuteNum toRelativeMonthNum toRelativeQuarterNum toRelativeSecondNum
    toRelativeWeekNum toRelativeYearNum toSecond toStartOfDay toStartOfFifteenMinutes toStartOfFiveMinute
    toStartOfFiveMinutes toStartOfHour toStartOfInterval toStartOfISOYear toStartOfMicrosecond toStartOfMillisecond
    toStartOfMinute toStartOfMonth toStartOfNanosecond toStartOfQuarter toStartOfSecond toStartOfTenMinutes
    toStartOfWeek toStartOfYear toTimeWithFixedDate toTimeZone toTimezone toUnixTimestamp toUTCTimestamp toWeek
    toYear toYearNumSinceEpoch toYearWeek toYYYYMM toYYYYMMDD toYYYYMMDDhhmmss UTC_timestamp UTCTimestamp week YEAR
    yearweek yesterday YYYYMMDDhhmmssToDateTime YYYYMMDDhhmmssToDateTime64 YYYYMMDDToDate YYYYMMDDToDate32
  `),
  encoding: list(`
    bin bitmaskToArray bitmaskToList bitPositionsToArray char hex hilbertDecode hilbertEncode mortonDecode
    mortonEncode sqid sqidDecode sqidEncode unbin unhex
  `),
  hash: list(`
    cityHash64 farmFingerprint64 farmHash64 gccMurmurHash halfMD5 hiveHash icebergHash intHash32 intHash64 javaHash
    javaHashUTF16LE jumpConsistentHash kafkaMurmurHash keccak256 kostikConsistentHash MD4 MD5 metroHash64
    murmurHash2_32 murmurHash2_64 murmurHash3_128 murmurHash3_32 murmurHash3_64 ngramMinHash ngramMinHashArg
    ngramMinHashArgCaseInsensitive ngramMinHashArgCaseInsensitiveUTF8 ngramMinHashArgUTF8
    ngramMinHashCaseInsensitive ngramMinHashCaseInsensitiveUTF8 ngramMinHashUTF8 ngramSimHash
    ngramSimHashCaseInsensitive ngramSimHashCaseInsensitiveUTF8 ngramSimHashUTF8 RIPEMD160 SHA1 SHA224 SHA256 SHA384
    SHA512 SHA512_256 sipHash128 sipHash128Keyed sipHash128Reference sipHash128ReferenceKeyed sipHash64
    sipHash64Keyed URLHash wordShingleMinHash wordShingleMinHashArg wordShingleMinHashArgCaseInsensitive
    wordShingleMinHashArgCaseInsensitiveUTF8 wordShingleMinHashArgUTF8 wordShingleMinHashCaseInsensitive
    wordShingleMinHashCaseInsensitiveUTF8 wordShingleMinHashUTF8 wordShingleSimHash
    wordShingleSimHashCaseInsensitive wordShingleSimHashCaseInsensitiveUTF8 wordShingleSimHashUTF8 wyHash64 xxh3
    xxh3_128 xxHash32 xxHash64 xxHash64Spark yandexConsistentHash
  `),
  json: list(`
    dynamicElement dynamicType isDynamicElementInSharedData isValidJSON JSON_ARRAY_LENGTH JSON_EXISTS JSON_QUERY
    JSON_VALUE JSONAllPaths JSONAllPathsWithTypes JSONAllValues JSONArrayLength JSONDynamicPaths
    JSONDynamicPathsWithTypes JSONExtract JSONExtractArrayRaw JSONExtractArrayRawCaseInsensitive JSONExtractBool
    JSONExtractBoolCaseInsensitive JSONExtractCaseInsensitive JSONExtractFloat JSONExtractFloatCaseInsensitive
    JSONExtractInt JSONExtractIntCaseInsensitive JSONExtractKeys JSONExtractKeysAndValues
    JSONExtractKeysAndValuesCaseInsensitive JSONExtractKeysAndValuesRaw JSONExtractKeysAndValuesRawCaseInsensitive
    JSONExtractKeysCaseInsensitive JSONExtractRaw JSONExtractRawCaseInsensitive JSONExtractString
    JSONExtractStringCaseInsensitive JSONExtractUInt JSONExtractUIntCaseInsensitive JSONHas JSONKey JSONLength
    jsonMergePatch JSONMergePatch JSONSharedDataPaths JSONSharedDataPathsWithTypes JSONType prettyPrintJSON
    simpleJSONExtractBool simpleJSONExtractFloat simpleJSONExtractInt simpleJSONExtractRaw simpleJSONExtractString
    simpleJSONExtractUInt simpleJSONHas toJSONString visitParamExtractBool visitParamExtractFloat
    visitParamExtractInt visitParamExtractRaw visitParamExtractString visitParamExtractUInt visitParamHas
  `),
  logical: list(`
    and not or xor
  `),
  map: list(`
    extractKeyValuePairs extractKeyValuePairsWithEscaping map MAP_FROM_ARRAYS mapAdd mapAll mapApply mapConcat
    mapContains mapContainsKey mapContainsKeyLike mapContainsValue mapContainsValueLike mapExists mapExtractKeyLike
    mapExtractValueLike mapFilter mapFromArrays mapFromString mapKeys mapPartialReverseSort mapPartialSort
    mapPopulateSeries mapReverseSort mapSort mapSubtract mapUpdate mapValues str_to_map
  `),
  math: list(`
    acos acosh asin asinh atan atan2 atanh cbrt cos cosh degrees e erf erfc exp exp10 exp2 factorial hypot intExp10
    intExp2 isPrime isProbablePrime lgamma ln log log10 log1p log2 pi pow power proportionsZTest radians sigmoid
    sign sin sinh sqrt tan tanh tgamma width_bucket widthBucket
  `),
  null: list(`
    assumeNotNull coalesce firstNonDefault ifNull isNotNull isNull isNullable isZeroOrNull nullIf toNullable
  `),
  rounding: list(`
    ceil ceiling floor round roundAge roundBankers roundDown roundDuration roundToExp2 trunc truncate
  `),
  string: list(`
    appendTrailingCharIfAbsent ascii base32Decode base32Encode base58Decode base58Encode base64Decode base64Encode
    base64URLDecode base64URLEncode basename byteHammingDistance byteSlice caseFoldUTF8 CHAR_LENGTH CHARACTER_LENGTH
    chdb compareSubstrings concat concat_ws concatAssumeInjective concatWithSeparator
    concatWithSeparatorAssumeInjective conv convertCharset CRC32 CRC32IEEE CRC64 damerauLevenshteinDistance
    decodeHTMLComponent decodeXMLComponent editDistance editDistanceUTF8 encodeXMLComponent endsWith
    endsWithCaseInsensitive endsWithCaseInsensitiveUTF8 endsWithUTF8 extractTextFromHTML firstLine FROM_BASE64
    initcap initcapUTF8 isASCII isValidASCII isValidUTF8 jaroSimilarity jaroWinklerSimilarity lcase left leftPad
    leftPadUTF8 leftUTF8 lengthUTF8 levenshteinDistance levenshteinDistanceUTF8 lower lowerUTF8 lpad ltrim mid
    mismatches NATURAL_SORT_KEY naturalSortKey normalizeUTF8NFC normalizeUTF8NFD normalizeUTF8NFKC
    normalizeUTF8NFKCCasefold normalizeUTF8NFKD REGEXP_EXTRACT regexp_instr REGEXP_SUBSTR regexpExtract regexpInstr
    regexpPosition removeAccentsUTF8 removeDiacriticsUTF8 repeat reverseUTF8 right rightPad rightPadUTF8 rightUTF8
    rpad rtrim soundex space sparseGrams sparseGramsHashes sparseGramsHashesUTF8 sparseGramsUTF8 startsWith
    startsWithCaseInsensitive startsWithCaseInsensitiveUTF8 startsWithUTF8 stringBytesEntropy stringBytesUniq
    stringJaccardIndex stringJaccardIndexUTF8 substr substring SUBSTRING_INDEX substringIndex substringIndexUTF8
    substringUTF8 TO_BASE64 toValidUTF8 trim trimBoth trimLeft trimRight tryBase32Decode tryBase58Decode
    tryBase64Decode tryBase64URLDecode ucase upper upperUTF8
  `),
  stringReplace: list(`
    overlay overlayUTF8 printf REGEXP_REPLACE regexpQuoteMeta replace replaceAll replaceOne replaceRegexpAll
    replaceRegexpOne translate translateUTF8
  `),
  stringSearch: list(`
    countMatches countMatchesCaseInsensitive countSubstrings countSubstringsCaseInsensitive
    countSubstringsCaseInsensitiveUTF8 extract extractAll extractAllGroupsHorizontal extractGroups hasAllToken
    hasAllTokens hasAnyToken hasAnyTokens hasPhrase hasSubsequence hasSubsequenceCaseInsensitive
    hasSubsequenceCaseInsensitiveUTF8 hasSubsequenceUTF8 hasToken hasTokenCaseInsensitive
    hasTokenCaseInsensitiveOrNull hasTokenOrNull highlight ilike instr like locate match matchPhrase
    multiFuzzyMatchAllIndices multiFuzzyMatchAny multiFuzzyMatchAnyIndex multiMatchAllIndices multiMatchAny
    multiMatchAnyIndex multiSearchAllPositions multiSearchAllPositionsCaseInsensitive
    multiSearchAllPositionsCaseInsensitiveUTF8 multiSearchAllPositionsUTF8 multiSearchAny
    multiSearchAnyCaseInsensitive multiSearchAnyCaseInsensitiveUTF8 multiSearchAnyUTF8 multiSearchFirstIndex
    multiSearchFirstIndexCaseInsensitive multiSearchFirstIndexCaseInsensitiveUTF8 multiSearchFirstIndexUTF8
    multiSearchFirstPosition multiSearchFirstPositionCaseInsensitive multiSearchFirstPositionCaseInsensitiveUTF8
    multiSearchFirstPositionUTF8 ngramDistance ngramDistanceCaseInsensitive ngramDistanceCaseInsensitiveUTF8
    ngramDistanceUTF8 ngramSearch ngramSearchCaseInsensitive ngramSearchCaseInsensitiveUTF8 ngramSearchUTF8 notILike
    notLike position positionCaseInsensitive positionCaseInsensitiveUTF8 positionUTF8 REGEXP_MATCHES
  `),
  stringSplit: list(`
    alphaTokens array_to_string arrayStringConcat extractAllGroups extractAllGroupsVertical naiveBayesNgrams ngrams
    reverseBySeparator splitByAlpha splitByChar splitByNonAlpha splitByRegexp splitByString splitByWhitespace tokens
    tokensForLikePattern
  `),
  tuple: list(`
    dotProduct flattenTuple scalarProduct tuple tupleConcat tupleDivide tupleDivideByNumber tupleElement
    tupleHammingDistance tupleIntDiv tupleIntDivByNumber tupleIntDivOrZero tupleIntDivOrZeroByNumber tupleMinus
    tupleModulo tupleModuloByNumber tupleMultiply tupleMultiplyByNumber tupleNames tupleNegate tuplePlus
    tuplePositiveModuloByNumber tupleToNameValuePairs vectorDifference vectorSum
  `),
  conversion: list(`
    accurateCast accurateCastOrDefault accurateCastOrNull CAST DATE formatRow formatRowNoNewline
    fromUnixTimestamp64Micro fromUnixTimestamp64Milli fromUnixTimestamp64Nano fromUnixTimestamp64Second
    parseDateTime parseDateTime32BestEffort parseDateTime32BestEffortOrNull parseDateTime32BestEffortOrZero
    parseDateTime64 parseDateTime64BestEffort parseDateTime64BestEffortOrNull parseDateTime64BestEffortOrZero
    parseDateTime64BestEffortUS parseDateTime64BestEffortUSOrNull parseDateTime64BestEffortUSOrZero
    parseDateTime64InJodaSyntax parseDateTime64InJodaSyntaxOrNull parseDateTime64InJodaSyntaxOrZero
    parseDateTime64OrNull parseDateTime64OrZero parseDateTimeBestEffort parseDateTimeBestEffortOrNull
    parseDateTimeBestEffortOrZero parseDateTimeBestEffortUS parseDateTimeBestEffortUSOrNull
    parseDateTimeBestEffortUSOrZero parseDateTimeInJodaSyntax parseDateTimeInJodaSyntaxOrNull
    parseDateTimeInJodaSyntaxOrZero parseDateTimeOrNull parseDateTimeOrZero reinterpret reinterpretAsDate
    reinterpretAsDateTime reinterpretAsFixedString reinterpretAsFloat32 reinterpretAsFloat64 reinterpretAsInt128
    reinterpretAsInt16 reinterpretAsInt256 reinterpretAsInt32 reinterpretAsInt64 reinterpretAsInt8
    reinterpretAsString reinterpretAsUInt128 reinterpretAsUInt16 reinterpretAsUInt256 reinterpretAsUInt32
    reinterpretAsUInt64 reinterpretAsUInt8 reinterpretAsUUID str_to_date TO_UNIXTIME toBFloat16 toBFloat16OrNull
    toBFloat16OrZero toBool toDate toDate32 toDate32OrDefault toDate32OrNull toDate32OrZero toDateOrDefault
    toDateOrNull toDateOrZero toDateTime toDateTime32 toDateTime64 toDateTime64OrDefault toDateTime64OrNull
    toDateTime64OrZero toDateTimeOrDefault toDateTimeOrNull toDateTimeOrZero toDecimal128 toDecimal128OrDefault
    toDecimal128OrNull toDecimal128OrZero toDecimal256 toDecimal256OrDefault toDecimal256OrNull toDecimal256OrZero
    toDecimal32 toDecimal32OrDefault toDecimal32OrNull toDecimal32OrZero toDecimal64 toDecimal64OrDefault
    toDecimal64OrNull toDecimal64OrZero toDecimalString toFixedString toFloat32 toFloat32OrDefault toFloat32OrNull
    toFloat32OrZero toFloat64 toFloat64OrDefault toFloat64OrNull toFloat64OrZero toInt128 toInt128OrDefault
    toInt128OrNull toInt128OrZero toInt16 toInt16OrDefault toInt16OrNull toInt16OrZero toInt256 toInt256OrDefault
    toInt256OrNull toInt256OrZero toInt32 toInt32OrDefault toInt32OrNull toInt32OrZero toInt64 toInt64OrDefault
    toInt64OrNull toInt64OrZero toInt8 toInt8OrDefault toInt8OrNull toInt8OrZero toInterval toIntervalDay
    toIntervalHour toIntervalMicrosecond toIntervalMillisecond toIntervalMinute toIntervalMonth toIntervalNanosecond
    toIntervalQuarter toIntervalSecond toIntervalWeek toIntervalYear toLowCardinality toString toStringCutToZero
    toTime toTime64 toTime64OrNull toTime64OrZero toTimeOrNull toTimeOrZero toUInt128 toUInt128OrDefault
    toUInt128OrNull toUInt128OrZero toUInt16 toUInt16OrDefault toUInt16OrNull toUInt16OrZero toUInt256
    toUInt256OrDefault toUInt256OrNull toUInt256OrZero toUInt32 toUInt32OrDefault toUInt32OrNull toUInt32OrZero
    toUInt64 toUInt64OrDefault toUInt64OrNull toUInt64OrZero toUInt8 toUInt8OrDefault toUInt8OrNull toUInt8OrZero
    toUnixTimestamp64Micro toUnixTimestamp64Milli toUnixTimestamp64Nano toUnixTimestamp64Second toUUID toUUIDOrZero
  `),
})

/** Aggregate function combinators (`sumIf`, `uniqExactIfState`, `groupArrayDistinct` ...). */
export const AGGREGATE_COMBINATORS = Object.freeze(
  ['If', 'Array', 'Map', 'Distinct', 'OrNull', 'OrDefault', 'State', 'SimpleState', 'MergeState', 'Merge', 'ForEach', 'Resample', 'ArgMin', 'ArgMax', 'Null', 'Tuple'],
)
